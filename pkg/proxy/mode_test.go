package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// A pause holds new requests with a backend active; resume sends every
// one of them to it.
func TestPauseHoldsUntilResume(t *testing.T) {
	p, url, log := newProxy(t)
	_, addr := upstream(t, "A", nil)
	b := activate(p, "v1", addr)
	c := newClient(t)
	p.PauseTraffic(time.Now().Add(time.Hour))
	var held []<-chan answer
	for range 20 {
		held = append(held, getAsync(context.Background(), c, url+"/"))
	}
	waitHeld(t, p, len(held))
	if n := b.Requests(); n != 0 {
		t.Fatalf("the backend got %d requests during the pause, want 0", n)
	}
	if !p.ResumeTraffic() {
		t.Error("ResumeTraffic() = false while paused")
	}
	for _, ch := range held {
		if a := recv(t, "a held request's answer", ch); a.err != nil || a.code != http.StatusOK || a.body != "A" {
			t.Errorf("held request: got %+v, want 200 A", a)
		}
	}
	if p.mode.Load() != nil {
		t.Error("the mode is still set after resume: the request path pays for it")
	}
	if p.ResumeTraffic() {
		t.Error("ResumeTraffic() = true when not paused")
	}
	if errs := log.all(); len(errs) != 0 {
		t.Errorf("errors reported: %v", errs)
	}
}

// A pause's deadline releases its requests even if nobody resumes.
func TestPauseDeadlineReleases(t *testing.T) {
	p, url, _ := newProxy(t)
	_, addr := upstream(t, "A", nil)
	activate(p, "v1", addr)
	p.PauseTraffic(time.Now().Add(50 * time.Millisecond))
	if a := recv(t, "the answer", getAsync(context.Background(), newClient(t), url+"/")); a.code != http.StatusOK || a.body != "A" {
		t.Errorf("got %+v, want 200 A once the pause's deadline passed", a)
	}
}

// Past MaxHeld, a paused request is answered 503 with Retry-After at once.
func TestPauseBound(t *testing.T) {
	p := New(Options{MaxHeld: 2})
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	_, addr := upstream(t, "A", nil)
	activate(p, "v1", addr)
	p.PauseTraffic(time.Now().Add(time.Hour))
	c := newClient(t)
	a1, a2 := getAsync(context.Background(), c, srv.URL), getAsync(context.Background(), c, srv.URL)
	waitHeld(t, p, 2)
	a := recv(t, "the third request's answer", getAsync(context.Background(), c, srv.URL))
	if a.code != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Errorf("third request: got %d Retry-After %q, want 503 with Retry-After", a.code, a.retryAfter)
	}
	p.ResumeTraffic()
	for _, ch := range []<-chan answer{a1, a2} {
		if a := recv(t, "a held answer", ch); a.code != http.StatusOK {
			t.Errorf("held request: got %+v, want 200", a)
		}
	}
}

// Released requests reach the backend at most HoldRelease at a time: the
// next one goes when one of them has the head of its answer.
func TestReleaseIsPaced(t *testing.T) {
	const n, slots = 12, 3
	var mu sync.Mutex
	inFlight, most := 0, 0
	unblock := make(chan struct{})
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		<-unblock
		mu.Lock()
		inFlight--
		mu.Unlock()
		_, _ = io.WriteString(w, "A")
	})
	p := New(Options{HoldRelease: slots})
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	b := activate(p, "v1", addr)
	p.PauseTraffic(time.Now().Add(time.Hour))
	c := newClient(t)
	var held []<-chan answer
	for range n {
		held = append(held, getAsync(context.Background(), c, srv.URL))
	}
	waitHeld(t, p, n)
	p.ResumeTraffic()
	for i := range n {
		waitCounts(t, b, int64(min(slots, n-i)), 0)
		unblock <- struct{}{}
	}
	for _, ch := range held {
		if a := recv(t, "a released answer", ch); a.code != http.StatusOK {
			t.Errorf("got %+v, want 200", a)
		}
	}
	if most != slots {
		t.Errorf("at most %d requests reached the backend at once, want %d (HoldRelease)", most, slots)
	}
}

// Maintenance answers 503 with Retry-After: HTML for a browser, JSON for
// a client that asks for JSON, the operator's page when given; the bypass
// rules let requests through.
func TestMaintenance(t *testing.T) {
	p, url, _ := newProxy(t)
	_, addr := upstream(t, "A", nil)
	activate(p, "v1", addr)
	p.SetMaintenance(&Maintenance{Message: "back <soon>", RetryAfter: 90 * time.Second,
		Bypass: Bypass{Header: "X-Bypass", Cookie: "bypass", Token: "s3cret", Clients: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}})
	c := newClient(t)
	do := func(hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url+"/", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	resp, body := do(map[string]string{"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "90" || !strings.Contains(body, "back &lt;soon&gt;") ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("browser: got %d Retry-After %q %q %q", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body)
	}
	resp, body = do(map[string]string{"Accept": "application/json"})
	var j struct {
		Error, Message string
		RetryAfter     int
	}
	if err := json.Unmarshal([]byte(body), &j); err != nil || resp.StatusCode != 503 || j.Message != "back <soon>" || j.RetryAfter != 90 {
		t.Errorf("JSON client: got %d %q (%v)", resp.StatusCode, body, err)
	}
	for name, hdr := range map[string]map[string]string{
		"header": {"X-Bypass": "s3cret"},
		"cookie": {"Cookie": "a=b; bypass=s3cret"},
	} {
		if resp, body := do(hdr); resp.StatusCode != 200 || body != "A" {
			t.Errorf("bypass by %s: got %d %q, want 200 A", name, resp.StatusCode, body)
		}
	}
	if resp, _ := do(map[string]string{"X-Bypass": "wrong"}); resp.StatusCode != 503 {
		t.Errorf("wrong token: got %d, want 503", resp.StatusCode)
	}
	// The client address: believed from X-Forwarded-For only for a trusted peer.
	if resp, _ := do(map[string]string{"X-Forwarded-For": "192.0.2.7"}); resp.StatusCode != 503 {
		t.Errorf("untrusted X-Forwarded-For: got %d, want 503", resp.StatusCode)
	}
	p.SetTrustedProxies([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	if resp, _ := do(map[string]string{"X-Forwarded-For": "192.0.2.7"}); resp.StatusCode != 200 {
		t.Errorf("client in the bypass network: got %d, want 200", resp.StatusCode)
	}
	p.SetMaintenance(&Maintenance{Page: "<p>our page</p>"})
	if resp, body := do(nil); resp.StatusCode != 503 || body != "<p>our page</p>" || resp.Header.Get("Retry-After") != "60" {
		t.Errorf("own page: got %d %q", resp.StatusCode, body)
	}
	p.SetMaintenance(nil)
	if p.mode.Load() != nil {
		t.Error("the mode is still set after maintenance ended")
	}
	if resp, body := do(nil); resp.StatusCode != 200 || body != "A" {
		t.Errorf("after maintenance: got %d %q", resp.StatusCode, body)
	}
}

func TestWantsJSON(t *testing.T) {
	for _, tc := range []struct {
		name, accept string
		want         bool
	}{
		{"none", "", false},
		{"any", "*/*", false},
		{"json", "application/json", true},
		{"problem", "application/problem+json", true},
		{"browser", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false},
		{"json first", "application/json, text/html;q=0.5", true},
		{"html first", "text/html, application/json;q=0.5", false},
		{"json refused", "application/json;q=0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wantsJSON([]string{tc.accept}); got != tc.want {
				t.Errorf("wantsJSON(%q) = %v, want %v", tc.accept, got, tc.want)
			}
		})
	}
}

// Requests a pause releases while no backend is active wait in the hold
// without keeping their release slot: once a backend comes, every one of
// them is served, even with a single slot. In a synctest bubble, so that
// "all of them wait in the hold" is a fact (synctest.Wait) and a deadlock
// over the slot would show as the hold's timeout passing (503).
func TestPauseReleasedIntoHold(t *testing.T) {
	_, addr := upstream(t, "A", nil) // outside the bubble: it blocks on the network
	synctest.Test(t, func(t *testing.T) {
		p := New(Options{HoldRelease: 1})
		defer p.Close()
		p.Hold(time.Hour)
		p.PauseTraffic(time.Now().Add(time.Hour))
		recs := make([]*httptest.ResponseRecorder, 3)
		var wg sync.WaitGroup
		for i := range recs {
			recs[i] = httptest.NewRecorder()
			wg.Go(func() { p.ServeHTTP(recs[i], httptest.NewRequest(http.MethodGet, "/", nil)) })
		}
		synctest.Wait()
		p.ResumeTraffic()
		synctest.Wait()
		if n := p.Held(); n != 3 {
			t.Fatalf("%d requests wait in the hold after resume, want 3", n)
		}
		activate(p, "v1", addr)
		wg.Wait()
		for i, rec := range recs {
			if rec.Code != http.StatusOK || rec.Body.String() != "A" {
				t.Errorf("request %d: got %d %q, want 200 A", i, rec.Code, rec.Body.String())
			}
		}
	})
}
