package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fraction returns the part of n answers that came from the canary.
func fraction(n, of int) float64 { return float64(n) / float64(of) }

// within checks that got is within ±0.03 of want.
func within(t testing.TB, what string, got, want float64) {
	t.Helper()
	if got < want-0.03 || got > want+0.03 {
		t.Errorf("%s: canary share %.4f, want %.2f ± 0.03", what, got, want)
	}
}

// canaryGet sends req with c and returns the body and the response.
func canaryGet(t testing.TB, c *http.Client, req *http.Request) (string, *http.Response) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d %q", req.Method, req.URL, resp.StatusCode, b)
	}
	return string(b), resp
}

func TestCanaryCookieSplitAndStickiness(t *testing.T) {
	p, url, _ := newProxy(t)
	_, stable := upstream(t, "stable", nil)
	_, canary := upstream(t, "canary", nil)
	activate(p, "v1", stable)
	if _, err := p.SetCanary(NewBackend("v2", canary), Canary{Share: 2500, Cookie: "rb_side"}); err != nil {
		t.Fatal(err)
	}

	// 10,000 fresh clients: no cookie sent, each is given a side.
	c := newClient(t)
	onCanary := 0
	const fresh = 10000
	for range fresh {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		body, resp := canaryGet(t, c, req)
		set := resp.Header.Values("Set-Cookie")
		want := map[string]string{"stable": "v1", "canary": "v2"}[body]
		if len(set) != 1 || !strings.HasPrefix(set[0], "rb_side="+want+";") ||
			!strings.Contains(set[0], "HttpOnly") || !strings.Contains(set[0], "SameSite=Lax") || !strings.Contains(set[0], "Path=/") {
			t.Fatalf("answer from %s set cookies %q, want one rb_side=%s; Path=/; HttpOnly; SameSite=Lax", body, set, want)
		}
		if body == "canary" {
			onCanary++
		}
	}
	within(t, "fresh clients", fraction(onCanary, fresh), 0.25)

	// Returning clients send the cookie back and keep their side, also
	// after the share changes (both ways).
	var clients []*http.Client
	var sides []string
	for range 200 {
		jar, _ := cookiejar.New(nil)
		cl := &http.Client{Transport: c.Transport, Jar: jar}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		body, _ := canaryGet(t, cl, req)
		clients, sides = append(clients, cl), append(sides, body)
	}
	for _, share := range []int{2500, 9000, 100} {
		if _, err := p.SetCanary(p.mustCanary(t), Canary{Share: share, Cookie: "rb_side"}); err != nil {
			t.Fatal(err)
		}
		for i, cl := range clients {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			body, resp := canaryGet(t, cl, req)
			if body != sides[i] {
				t.Fatalf("share %d: returning client %d answered by %s, want %s", share, i, body, sides[i])
			}
			if set := resp.Header.Values("Set-Cookie"); len(set) != 0 {
				t.Errorf("returning client got Set-Cookie %q, want none", set)
			}
		}
	}

	// A cookie naming a release that is not routed to is a new client.
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.AddCookie(&http.Cookie{Name: "rb_side", Value: "v0"})
	if _, resp := canaryGet(t, c, req); len(resp.Header.Values("Set-Cookie")) != 1 {
		t.Errorf("a stale cookie got Set-Cookie %q, want a new side", resp.Header.Values("Set-Cookie"))
	}
}

// mustCanary returns the running canary's backend.
func (p *Proxy) mustCanary(t testing.TB) *Backend {
	t.Helper()
	b, _ := p.CanaryBackend()
	if b == nil {
		t.Fatal("no canary runs")
	}
	return b
}

func TestCanaryHashSplit(t *testing.T) {
	p := New(Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	_, stable := upstream(t, "stable", nil)
	_, canary := upstream(t, "canary", nil)
	activate(p, "v1", stable)
	if _, err := p.SetCanary(NewBackend("v2", canary), Canary{Share: 1000}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t)
	side := func(client string) string {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("X-Forwarded-For", client)
		body, resp := canaryGet(t, c, req)
		if set := resp.Header.Values("Set-Cookie"); len(set) != 0 {
			t.Fatalf("hashing set cookies %q, want none", set)
		}
		return body
	}
	const fresh = 10000
	first := make([]string, fresh)
	onCanary := 0
	for i := range fresh {
		first[i] = side(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
		if first[i] == "canary" {
			onCanary++
		}
	}
	within(t, "fresh clients", fraction(onCanary, fresh), 0.10)

	// A bigger share keeps every client already on the canary there.
	if _, err := p.SetCanary(p.mustCanary(t), Canary{Share: 3000}); err != nil {
		t.Fatal(err)
	}
	onCanary = 0
	for i := range fresh {
		got := side(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
		if first[i] == "canary" && got != "canary" {
			t.Fatalf("client %d left the canary when its share grew", i)
		}
		if got == "canary" {
			onCanary++
		}
	}
	within(t, "after the share grew", fraction(onCanary, fresh), 0.30)
}

// The app's own cookies reach the client beside the canary's, on the fast
// path (no body) and on ReverseProxy's (a body).
func TestCanaryKeepsAppCookies(t *testing.T) {
	p, url, _ := newProxy(t)
	app := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "session", Value: name})
			_, _ = io.WriteString(w, name)
		}
	}
	_, stable := upstream(t, "", app("stable"))
	_, canary := upstream(t, "", app("canary"))
	activate(p, "v1", stable)
	if _, err := p.SetCanary(NewBackend("v2", canary), Canary{Share: 5000, Cookie: "rb_side"}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t)
	for _, body := range []io.Reader{nil, strings.NewReader("upload")} {
		req, _ := http.NewRequest(http.MethodPost, url, body)
		_, resp := canaryGet(t, c, req)
		names := map[string]bool{}
		for _, ck := range resp.Cookies() {
			names[ck.Name] = true
		}
		if !names["session"] || !names["rb_side"] {
			t.Errorf("body %v: cookies %q, want session and rb_side", body != nil, resp.Header.Values("Set-Cookie"))
		}
	}
}

// A WebSocket stays on the side it was upgraded on when the canary is
// aborted, and new ones go to the active release.
func TestCanaryWebSocketPinned(t *testing.T) {
	p, url, _ := newProxy(t)
	a := activate(p, "v1", newWSApp(t, "A").addr)
	b := NewBackend("v2", newWSApp(t, "B").addr)
	if _, err := p.SetCanary(b, Canary{Share: ShareScale}); err != nil {
		t.Fatal(err)
	}
	c := dialWS(t, url)
	if got := echo(t, c, "hi"); got != "B:hi" {
		t.Fatalf("got %q, want B:hi (share 100 %%)", got)
	}
	if prev, _ := p.SetCanary(nil, Canary{}); prev != b {
		t.Fatalf("abort returned %v, want the canary", prev)
	}
	if got := echo(t, c, "still"); got != "B:still" {
		t.Errorf("after abort the open socket answered %q, want B:still", got)
	}
	c2 := dialWS(t, url)
	if got := echo(t, c2, "new"); got != "A:new" {
		t.Errorf("a socket opened after abort answered %q, want A:new", got)
	}
	wantCounts(t, b, 0, 1)
	wantCounts(t, a, 0, 1)
	for _, ws := range []*websocket.Conn{c, c2} {
		if err := ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	waitCounts(t, a, 0, 0)
	waitCounts(t, b, 0, 0)
}

// Canaries come and go under load, each ending as a deploy's old release
// does (drained, then its process gone): promote drains the old active
// one, abort the canary. Not one request may fail: a request counted on a
// backend that was taken out of the route right then must be routed again,
// or a drain that saw 0 lets its process stop under it.
func TestCanaryPromoteAbortUnderLoad(t *testing.T) {
	p, url, _ := newProxy(t)
	srv, addr := upstream(t, "r0", nil)
	active, activeSrv := NewBackend("r0", addr), srv
	p.Swap(active)
	l := startLoad(t, url, 8)
	drainAndStop := func(b *Backend, s *httptest.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Drain(ctx); err != nil {
			t.Fatalf("drain %s: %v", b.ReleaseID(), err)
		}
		s.Close()
	}
	for i := 1; i <= 30; i++ {
		id := fmt.Sprintf("r%d", i)
		csrv, caddr := upstream(t, id, nil)
		canary := NewBackend(id, caddr)
		if _, err := p.SetCanary(canary, Canary{Share: 5000, Cookie: "rb_side"}); err != nil {
			t.Fatal(err)
		}
		l.waitFor(t, 20)
		if i%2 == 0 {
			prev := p.Promote()
			if prev != active {
				t.Fatalf("Promote returned %v, want %s", prev, active.ReleaseID())
			}
			drainAndStop(prev, activeSrv)
			active, activeSrv = canary, csrv
		} else {
			if prev, _ := p.SetCanary(nil, Canary{}); prev != canary {
				t.Fatalf("abort returned %v, want %s", prev, id)
			}
			drainAndStop(canary, csrv)
		}
		l.waitFor(t, 20)
	}
	l.stop(t)
	if p.Active() != active {
		t.Errorf("Active() = %v, want %s", p.Active(), active.ReleaseID())
	}
}

func TestSetCanaryShareRange(t *testing.T) {
	p := New(Options{})
	for _, share := range []int{-1, ShareScale + 1} {
		if _, err := p.SetCanary(NewBackend("v2", "127.0.0.1:1"), Canary{Share: share}); err == nil {
			t.Errorf("share %d accepted", share)
		}
	}
}
