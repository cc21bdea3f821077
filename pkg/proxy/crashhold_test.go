package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// crashProxy is a Proxy with the crash hold on (hold each), served on a
// real listener.
func crashProxy(t *testing.T, hold time.Duration) (*Proxy, string, *errorLog) {
	t.Helper()
	log := &errorLog{}
	p := New(Options{OnError: log.onError, CrashHold: hold})
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return p, srv.URL, log
}

// seen records the requests an app received: "METHOD body".
type seen struct {
	mu   sync.Mutex
	reqs []string
}

func (s *seen) add(r *http.Request) {
	b, _ := io.ReadAll(r.Body) // what arrived of it
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, strings.TrimSpace(r.Method+" "+string(b)))
}

func (s *seen) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// hangUp closes the connection of the request it is given without a byte
// of an answer, as an app whose process dies while handling it.
func hangUp(t *testing.T, w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	_ = c.Close()
}

func send(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Error(err)
		return 0, "", nil
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err) // Errorf: sendAsync calls it off the test's goroutine
		return 0, "", nil
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(got)), resp.Header
}

type reply struct {
	code int
	body string
	hdr  http.Header
}

func sendAsync(t *testing.T, method, url, body string) <-chan reply {
	ch := make(chan reply, 1)
	go func() {
		code, got, hdr := send(t, method, url, body)
		ch <- reply{code, got, hdr}
	}()
	return ch
}

// TestCrashHoldNoAnswer: the app reads a request's head and closes the
// connection without answering (its process died with the request). A
// GET is sent once more (the app is reachable: at once) and answered; a
// GET that meets the same fate twice gets 502, sent twice, no more. A
// POST reached the app: 502, never sent again, body or not.
func TestCrashHoldNoAnswer(t *testing.T) {
	for _, tc := range []struct {
		name, method, body string
		hangUps            int // how many of the requests the app hangs up on
		wantCode           int
		wantSeen           []string
	}{
		{"GET sent again", http.MethodGet, "", 1, http.StatusOK, []string{"GET", "GET"}},
		{"GET sent again once only", http.MethodGet, "", 5, http.StatusBadGateway, []string{"GET", "GET"}},
		{"POST with a body not replayed", http.MethodPost, "pay 10 EUR", 5, http.StatusBadGateway, []string{"POST pay 10 EUR"}},
		{"POST without a body not replayed", http.MethodPost, "", 5, http.StatusBadGateway, []string{"POST"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &seen{}
			var mu sync.Mutex
			left := tc.hangUps
			_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
				app.add(r)
				mu.Lock()
				hang := left > 0
				left--
				mu.Unlock()
				if hang {
					hangUp(t, w)
					return
				}
				_, _ = io.WriteString(w, "served")
			})
			p, url, _ := crashProxy(t, time.Minute)
			activate(p, "v1", addr)
			code, got, _ := send(t, tc.method, url+"/", tc.body)
			if code != tc.wantCode {
				t.Errorf("status %d %q, want %d", code, got, tc.wantCode)
			}
			if s := app.all(); strings.Join(s, "|") != strings.Join(tc.wantSeen, "|") {
				t.Errorf("the app saw %q, want %q", s, tc.wantSeen)
			}
			if n := p.Held(); n != 0 {
				t.Errorf("Held() = %d after the answer", n)
			}
		})
	}
}

// listenAt listens on addr again (the restarted process on its port).
func listenAt(t *testing.T, addr string, h http.HandlerFunc) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
}

// TestCrashHoldRefused: the app's port refuses the connection (its
// process is down) before the supervisor has taken its backend out. The
// request (a POST with a body, which nobody read) waits, counted in Held,
// until the backend serves again: after a Swap to it, or after a Pause
// and that Swap, as the supervisor does around a restart. The app sees
// the POST once, whole, and only once it serves again.
func TestCrashHoldRefused(t *testing.T) {
	for _, pause := range []bool{false, true} {
		name := "swap"
		if pause {
			name = "pause then swap"
		}
		t.Run(name, func(t *testing.T) {
			addr := closedAddr(t)
			p, url, log := crashProxy(t, time.Minute)
			b := activate(p, "v1", addr)
			reply := sendAsync(t, http.MethodPost, url+"/orders", "one order")
			testutil.Eventually(t, "the POST held", func() bool { return p.Held() == 1 })
			if pause {
				p.Pause(time.Minute) // the supervisor saw the exit
			}
			app := &seen{}
			listenAt(t, addr, func(w http.ResponseWriter, r *http.Request) {
				app.add(r)
				_, _ = io.WriteString(w, "created")
			})
			if s := app.all(); len(s) != 0 {
				t.Fatalf("the app saw %q before it was back", s)
			}
			p.Swap(b) // healthy again
			a := <-reply
			if a.code != http.StatusOK || a.body != "created" {
				t.Errorf("answer %d %q, want 200 created", a.code, a.body)
			}
			if s := app.all(); len(s) != 1 || s[0] != "POST one order" {
				t.Errorf("the app saw %q, want the POST once", s)
			}
			if errs := log.all(); len(errs) != 0 {
				t.Errorf("OnError heard about a request that succeeded: %q", errs)
			}
			waitCounts(t, b, 0, 0)
		})
	}
}

// TestCrashHoldOff: without the crash hold a refused connection is 502 at
// once, as before.
func TestCrashHoldOff(t *testing.T) {
	p, url, _ := crashProxy(t, 0)
	activate(p, "v1", closedAddr(t))
	if code, got, _ := send(t, http.MethodGet, url+"/", ""); code != http.StatusBadGateway {
		t.Errorf("status %d %q, want 502", code, got)
	}
}

// TestCrashHoldGivesUp: a request held for a backend that does not come
// back within the crash hold gets 503 with Retry-After, counted in
// HoldGaveUp; one held when the release is stopped (a Swap to none, no
// hold in force) gets 503 at once.
func TestCrashHoldGivesUp(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		p, url, log := crashProxy(t, 50*time.Millisecond)
		activate(p, "v1", closedAddr(t))
		code, _, hdr := send(t, http.MethodGet, url+"/", "")
		if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
			t.Errorf("status %d, Retry-After %q; want 503 with Retry-After", code, hdr.Get("Retry-After"))
		}
		if n := p.HoldGaveUp(); n != 1 {
			t.Errorf("HoldGaveUp() = %d, want 1", n)
		}
		if errs := log.all(); len(errs) != 1 || !strings.Contains(errs[0], ErrNotHeld.Error()) {
			t.Errorf("OnError heard %q, want one ErrNotHeld", errs)
		}
	})
	t.Run("release stopped", func(t *testing.T) {
		p, url, _ := crashProxy(t, time.Minute)
		activate(p, "v1", closedAddr(t))
		reply := sendAsync(t, http.MethodGet, url+"/", "")
		testutil.Eventually(t, "the GET held", func() bool { return p.Held() == 1 })
		p.Swap(nil)
		if a := <-reply; a.code != http.StatusServiceUnavailable || a.body != "No active release" {
			t.Errorf("answer %d %q, want 503 No active release", a.code, a.body)
		}
	})
}

// TestCrashHoldNotForCanary: a canary's failure is 502 as before (the
// supervisor does not tell the proxy when a canary serves again).
func TestCrashHoldNotForCanary(t *testing.T) {
	p, url, _ := crashProxy(t, time.Minute)
	_, addr := upstream(t, "main", nil)
	activate(p, "v1", addr)
	if _, err := p.SetCanary(NewBackend("v2", closedAddr(t)), Canary{Share: ShareScale}); err != nil {
		t.Fatal(err)
	}
	if code, got, _ := send(t, http.MethodGet, url+"/", ""); code != http.StatusBadGateway {
		t.Errorf("status %d %q, want 502", code, got)
	}
}

// TestCrashHoldGivesBackItsReleaseSlot: a request released from a hold
// (it holds one of Options.HoldRelease slots) that then fails on a crashed
// app waits in the crash hold without its slot; with one slot in all it
// would otherwise keep itself from being released again and get 503 at
// the hold's timeout.
func TestCrashHoldGivesBackItsReleaseSlot(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var crashedOnce atomic.Bool
	crashed := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		crashedOnce.Store(true)
		_ = ln.Close() // the process dies: its port refuses from now on
		hangUp(t, w)
	})}
	go func() { _ = crashed.Serve(ln) }()
	t.Cleanup(func() { _ = crashed.Close() })

	p := New(Options{CrashHold: 2 * time.Second, HoldRelease: 1})
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	b := activate(p, "v1", addr)
	p.Pause(2 * time.Second) // held until the Swap below
	reply := sendAsync(t, http.MethodGet, srv.URL+"/", "")
	testutil.Eventually(t, "the GET held", func() bool { return p.Held() == 1 })
	p.Swap(b) // released: takes the one slot, meets the crash
	testutil.Eventually(t, "the GET in the crash hold", func() bool {
		select {
		case a := <-reply:
			t.Fatalf("answered %d %q before the app was back", a.code, a.body)
		default:
		}
		return p.Held() == 1 && crashedOnce.Load()
	})
	listenAt(t, addr, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "back") })
	p.Swap(b)
	if a := <-reply; a.code != http.StatusOK || a.body != "back" {
		t.Errorf("answer %d %q, want 200 back (the request kept its own release slot?)", a.code, a.body)
	}
}

// TestCrashHoldAfterThePoolsRetry: a GET that failed on a reused
// connection and again on the fresh one the transport retried it on has
// reached the app twice; the crash hold does not send it a third time.
func TestCrashHoldAfterThePoolsRetry(t *testing.T) {
	app := &seen{}
	var hang atomic.Bool
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		app.add(r)
		if hang.Load() {
			hangUp(t, w)
			return
		}
		_, _ = io.WriteString(w, "served")
	})
	p, url, _ := crashProxy(t, time.Minute)
	activate(p, "v1", addr)
	if code, got, _ := send(t, http.MethodGet, url+"/", ""); code != http.StatusOK {
		t.Fatalf("first GET: %d %q", code, got) // leaves a pooled connection
	}
	hang.Store(true)
	if code, got, _ := send(t, http.MethodGet, url+"/", ""); code != http.StatusBadGateway {
		t.Errorf("status %d %q, want 502", code, got)
	}
	if s := app.all(); len(s) != 3 {
		t.Errorf("the app saw %q: the first GET, then the second twice (reused connection, the pool's retry), no more", s)
	}
}
