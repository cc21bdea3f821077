package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// answer is what a client got for one request.
type answer struct {
	code       int
	body       string
	retryAfter string
	err        error
}

// getAsync sends GET url from its own goroutine; the answer arrives on the
// returned channel.
func getAsync(ctx context.Context, c *http.Client, url string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		resp, err := c.Do(req)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- answer{code: resp.StatusCode, body: string(b), retryAfter: resp.Header.Get("Retry-After"), err: err}
	}()
	return ch
}

// waitHeld waits until p holds n requests.
func waitHeld(t testing.TB, p *Proxy, n int) {
	t.Helper()
	testutil.Eventually(t, "requests held", func() bool { return p.Held() == n })
}

// A request that finds no release while the proxy holds waits for one and
// is served by it; it is never answered 503.
func TestHoldWaitsForSwap(t *testing.T) {
	p, url, log := newProxy(t)
	p.Hold(time.Hour)
	c := newClient(t)
	var held []<-chan answer
	for range 20 {
		held = append(held, getAsync(context.Background(), c, url+"/"))
	}
	waitHeld(t, p, len(held))
	_, addr := upstream(t, "A", nil)
	b := activate(p, "v1", addr)
	for _, ch := range held {
		if a := recv(t, "a held request's answer", ch); a.err != nil || a.code != http.StatusOK || a.body != "A" {
			t.Errorf("held request: got %+v, want 200 A", a)
		}
	}
	waitHeld(t, p, 0)
	waitCounts(t, b, 0, 0)
	if n := b.Requests(); n != uint64(len(held)) {
		t.Errorf("Requests() = %d, want %d", n, len(held))
	}
	// While a backend is active, the hold changes nothing.
	if code, body := get(t, c, url+"/"); code != http.StatusOK || body != "A" {
		t.Errorf("with v1 active: got %d %q, want 200 A", code, body)
	}
	if errs := log.all(); len(errs) != 0 {
		t.Errorf("OnError: %q", errs)
	}
}

// A release that does not come within the hold timeout: 503 with
// Retry-After, and the next request waits again.
func TestHoldTimeout(t *testing.T) {
	p, url, log := newProxy(t)
	p.Hold(20 * time.Millisecond)
	c := newClient(t)
	for i := range 2 {
		a := recv(t, "the answer after the hold timeout", getAsync(context.Background(), c, url+"/"))
		if a.err != nil || a.code != http.StatusServiceUnavailable || a.body != "No active release\n" || a.retryAfter != holdRetryAfter {
			t.Errorf("request %d: got %+v, want 503 %q with Retry-After %s", i, a, "No active release\n", holdRetryAfter)
		}
	}
	if n := p.Held(); n != 0 {
		t.Errorf("Held() = %d after the timeouts, want 0", n)
	}
	if n := p.HoldGaveUp(); n != 2 {
		t.Errorf("HoldGaveUp() = %d, want 2", n)
	}
	if errs := log.all(); len(errs) != 2 || !strings.Contains(errs[0], "GET /: no active release in time") || !strings.Contains(errs[0], "the hold timeout") {
		t.Errorf("OnError heard %q, want two reports of the hold timeout", errs)
	}
}

// Beyond MaxHeld, a request is answered 503 with Retry-After at once; the
// ones waiting are still served.
func TestHoldBound(t *testing.T) {
	p := New(Options{MaxHeld: 2})
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	p.Hold(time.Hour)
	c := newClient(t)
	held := []<-chan answer{getAsync(context.Background(), c, srv.URL), getAsync(context.Background(), c, srv.URL)}
	waitHeld(t, p, 2)
	want := "No active release; too many requests waiting for one\n"
	if a := recv(t, "the third request's answer", getAsync(context.Background(), c, srv.URL)); a.code != http.StatusServiceUnavailable || a.body != want || a.retryAfter != holdRetryAfter {
		t.Errorf("third request: got %+v, want 503 %q with Retry-After %s", a, want, holdRetryAfter)
	}
	if n := p.Held(); n != 2 {
		t.Errorf("Held() = %d after the refused request, want 2", n)
	}
	if n := p.HoldGaveUp(); n != 1 {
		t.Errorf("HoldGaveUp() = %d after the refused request, want 1", n)
	}
	_, addr := upstream(t, "A", nil)
	activate(p, "v1", addr)
	for _, ch := range held {
		if a := recv(t, "a held request's answer", ch); a.code != http.StatusOK || a.body != "A" {
			t.Errorf("held request: got %+v, want 200 A", a)
		}
	}
}

// A client that gives up frees its place at once; the proxy reports nothing.
func TestHoldClientGoesAway(t *testing.T) {
	p, url, log := newProxy(t)
	p.Hold(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	ch := getAsync(ctx, newClient(t), url)
	waitHeld(t, p, 1)
	cancel()
	if a := recv(t, "the cancelled request", ch); !errors.Is(a.err, context.Canceled) {
		t.Errorf("cancelled request: got %+v, want context.Canceled", a)
	}
	waitHeld(t, p, 0)
	if errs := log.all(); len(errs) != 0 {
		t.Errorf("OnError: %q", errs)
	}
}

// EndHold answers the waiting requests 503 at once, without Retry-After
// (no release is on its way), and so are later ones.
func TestEndHold(t *testing.T) {
	p, url, _ := newProxy(t)
	p.Hold(time.Hour)
	c := newClient(t)
	ch := getAsync(context.Background(), c, url)
	waitHeld(t, p, 1)
	p.EndHold()
	a := recv(t, "the held request after EndHold", ch)
	if a.code != http.StatusServiceUnavailable || a.body != "No active release\n" || a.retryAfter != "" {
		t.Errorf("held request after EndHold: got %+v, want 503 %q without Retry-After", a, "No active release\n")
	}
	if code, body := get(t, c, url); code != http.StatusServiceUnavailable || body != "No active release\n" {
		t.Errorf("after EndHold: got %d %q, want 503", code, body)
	}
	p.EndHold() // idempotent
}

// A Swap to nil while requests wait does not release them: they wait on
// for a backend.
func TestHoldSurvivesSwapToNil(t *testing.T) {
	p, url, _ := newProxy(t)
	p.Hold(time.Hour)
	ch := getAsync(context.Background(), newClient(t), url)
	waitHeld(t, p, 1)
	p.Swap(nil)
	p.Hold(time.Hour) // a new gate wakes the waiter, which finds no backend and waits again
	waitHeld(t, p, 1)
	_, addr := upstream(t, "A", nil)
	activate(p, "v1", addr)
	if a := recv(t, "the held request", ch); a.code != http.StatusOK || a.body != "A" {
		t.Errorf("held request: got %+v, want 200 A", a)
	}
}

// A WebSocket upgrade is held the same way and pinned to the backend that
// ends its wait.
func TestHoldUpgrade(t *testing.T) {
	p, url, _ := newProxy(t)
	p.Hold(time.Hour)
	type dialed struct {
		c   *websocket.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, _, err := websocket.Dial(ctx, wsURL(url), nil)
		ch <- dialed{c, err}
	}()
	waitHeld(t, p, 1)
	b := activate(p, "v1", newWSApp(t, "A").addr)
	d := recv(t, "the held upgrade", ch)
	if d.err != nil {
		t.Fatalf("held upgrade: %v", d.err)
	}
	t.Cleanup(func() { _ = d.c.CloseNow() })
	if got := echo(t, d.c, "hi"); got != "A:hi" {
		t.Errorf("got %q, want A:hi", got)
	}
	wantCounts(t, b, 0, 1)
	if err := d.c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
	waitCounts(t, b, 0, 0)
}

// Pause holds the requests that arrive while its backend is out until the
// next Swap sends them to the new one, and that Swap ends the hold: with no
// backend afterwards, a request is answered 503 at once.
func TestPauseHoldsUntilSwap(t *testing.T) {
	p, url, _ := newProxy(t)
	_, addr := upstream(t, "A", nil)
	b := activate(p, "v1", addr)
	c := newClient(t)
	if prev := p.Pause(time.Hour); prev != b {
		t.Fatalf("Pause returned %v, want the active backend", prev)
	}
	held := []<-chan answer{getAsync(context.Background(), c, url+"/"), getAsync(context.Background(), c, url+"/")}
	waitHeld(t, p, len(held))
	p.Swap(b) // the restarted process serves again
	for _, ch := range held {
		if a := recv(t, "a held request's answer", ch); a.code != http.StatusOK || a.body != "A" {
			t.Errorf("held request: got %+v, want 200 A", a)
		}
	}
	p.Swap(nil)
	if a := recv(t, "the answer with no backend", getAsync(context.Background(), c, url+"/")); a.code != http.StatusServiceUnavailable || a.retryAfter != "" {
		t.Errorf("after the pause ended: got %+v, want 503 at once (no Retry-After)", a)
	}
}

// A Swap to nil during a Pause (the release was stopped for good) answers
// the held requests 503 at once; Pause(0) holds nothing.
func TestPauseEndedBySwapToNil(t *testing.T) {
	p, url, _ := newProxy(t)
	_, addr := upstream(t, "A", nil)
	activate(p, "v1", addr)
	c := newClient(t)
	p.Pause(time.Hour)
	ch := getAsync(context.Background(), c, url+"/")
	waitHeld(t, p, 1)
	p.Swap(nil)
	if a := recv(t, "the held request's answer", ch); a.code != http.StatusServiceUnavailable || a.body != "No active release\n" {
		t.Errorf("held request at a stop: got %+v, want 503 No active release", a)
	}
	activate(p, "v2", addr)
	p.Pause(0)
	if a := recv(t, "the answer during Pause(0)", getAsync(context.Background(), c, url+"/")); a.code != http.StatusServiceUnavailable {
		t.Errorf("Pause(0): got %+v, want 503 at once", a)
	}
}
