package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// connTracker counts an upstream's open client connections and how many
// of them are idle, from the server's own view (http.Server.ConnState).
type connTracker struct {
	mu    sync.Mutex
	state map[net.Conn]http.ConnState
}

func (c *connTracker) hook(conn net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == nil {
		c.state = map[net.Conn]http.ConnState{}
	}
	if s == http.StateClosed || s == http.StateHijacked {
		delete(c.state, conn)
		return
	}
	c.state[conn] = s
}

// counts returns the open connections and the idle ones among them.
func (c *connTracker) counts() (open, idle int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.state {
		open++
		if s == http.StateIdle {
			idle++
		}
	}
	return open, idle
}

// trackedUpstream is upstream with its connections tracked.
func trackedUpstream(t *testing.T, h http.HandlerFunc) (*connTracker, string) {
	t.Helper()
	tr := &connTracker{}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = tr.hook
	srv.Start()
	t.Cleanup(srv.Close)
	return tr, srv.Listener.Addr().String()
}

// TestRetireClosesIdleConnections: once a backend is retired (its release
// was switched away from), the app sees no idle connection of the proxy
// left — those of plain and of body requests — while a request still in
// flight on it completes, and its connection is closed after it.
func TestRetireClosesIdleConnections(t *testing.T) {
	release := make(chan struct{})
	tr, addr := trackedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "old")
	})
	p, url, _ := newProxy(t)
	b := activate(p, "v1", addr)
	c := newClient(t)
	for range 3 {
		if code, body := get(t, c, url+"/"); code != 200 || body != "old" {
			t.Fatalf("GET: %d %q", code, body)
		}
		resp, err := c.Post(url+"/upload", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	testutil.Eventually(t, "pooled connections to the app", func() bool { _, idle := tr.counts(); return idle >= 2 })

	slow := make(chan error, 1)
	go func() {
		resp, err := newClient(t).Get(url + "/slow")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "old" {
				err = fmt.Errorf("answer %q", b)
			}
		}
		slow <- err
	}()
	testutil.Eventually(t, "the slow request in flight", func() bool { n, _ := b.Connections(); return n == 1 })

	_, next := upstream(t, "new", nil)
	activate(p, "v2", next)
	b.Retire()
	testutil.Eventually(t, "no idle connection to the retired app", func() bool {
		open, idle := tr.counts()
		return idle == 0 && open == 1 // the slow request's, still busy
	})
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("the request in flight at the retirement: %v", err)
	}
	testutil.Eventually(t, "its connection closed, not pooled", func() bool { open, _ := tr.counts(); return open == 0 })
	if code, body := get(t, c, url+"/"); code != 200 || body != "new" {
		t.Errorf("after the switch: %d %q", code, body)
	}
}

// TestUpstreamTimeout: an app that accepts a request and never answers
// gets a 504 after the upstream timeout, on the fast path and the body
// path, reported once each; one that answers its head in time may stream
// its body for longer.
func TestUpstreamTimeout(t *testing.T) {
	hang := make(chan struct{})
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		case "/stream":
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			time.Sleep(600 * time.Millisecond) // longer than the timeout: only the head is bounded
			_, _ = io.WriteString(w, "done")
		}
	})
	// Before the upstream's Close (cleanups run last first), which waits for
	// its handlers: one whose request body was never read does not see its
	// client leave.
	t.Cleanup(func() { close(hang) })
	log := &errorLog{}
	p := New(Options{OnError: log.onError, UpstreamTimeout: 200 * time.Millisecond})
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	activate(p, "v1", addr)
	c := newClient(t)

	if code, body := get(t, c, srv.URL+"/hang"); code != http.StatusGatewayTimeout || body != "Gateway timeout\n" {
		t.Errorf("GET to a hung app: %d %q, want 504", code, body)
	}
	resp, err := c.Post(srv.URL+"/hang", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("POST to a hung app: %d, want 504", resp.StatusCode)
	}
	if code, body := get(t, c, srv.URL+"/stream"); code != 200 || body != "done" {
		t.Errorf("a slow body after a prompt head: %d %q, want 200 done", code, body)
	}
	// A WebSocket handshake the app never answers.
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	ws, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/hang", nil)
	if err == nil {
		ws.CloseNow()
		t.Error("a handshake the app never answered succeeded")
	} else if res == nil || res.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("handshake to a hung app: %v (%v), want 504", err, res)
	}
	errs := log.all()
	if len(errs) != 3 || !strings.Contains(errs[0], "GET /hang") || !strings.Contains(errs[1], "POST /hang") ||
		!strings.Contains(errs[2], "no response head from the app within 200ms") {
		t.Errorf("reported %q, want one report per timed-out request", errs)
	}
}

// TestServerSentEventsAreNotBuffered: the app writes event N+1 only after
// the client has read event N through the proxy, so any buffering on the
// way deadlocks the stream; it must complete, on the plain path (GET) and
// the body path (POST).
func TestServerSentEventsAreNotBuffered(t *testing.T) {
	const events = 5
	received := make(chan int)
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range events {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case got := <-received:
				if got != i {
					return
				}
			case <-time.After(testutil.Timeout):
				return // the proxy held event i back
			}
		}
	})
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			var body io.Reader
			if method == http.MethodPost {
				body = strings.NewReader("subscribe")
			}
			req, _ := http.NewRequestWithContext(context.Background(), method, url+"/events", body)
			resp, err := newClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			for i := range events {
				line, err := br.ReadString('\n')
				if err != nil || line != fmt.Sprintf("data: %d\n", i) {
					t.Fatalf("event %d: %q, %v", i, line, err)
				}
				_, _ = br.ReadString('\n') // the blank line ending the event
				received <- i
			}
			if rest, _ := io.ReadAll(br); len(rest) != 0 {
				t.Errorf("after the last event: %q", rest)
			}
		})
	}
}
