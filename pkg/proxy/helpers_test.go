package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: a leaked
// copy goroutine is how a half-closed upgrade shows up.
func TestMain(m *testing.M) {
	if os.Getenv(spliceChildEnv) != "" {
		os.Exit(runSpliceChild())
	}
	goleak.VerifyTestMain(m)
}

// upstream starts a real HTTP server; with h nil it answers with name.
// It returns the server and its host:port.
func upstream(t testing.TB, name string, h http.HandlerFunc) (*httptest.Server, string) {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, name) }
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, srv.Listener.Addr().String()
}

// errorLog collects what a Proxy reports to Options.OnError.
type errorLog struct {
	mu   sync.Mutex
	errs []string
}

func (l *errorLog) onError(releaseID string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, releaseID+": "+err.Error())
}

func (l *errorLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

// newProxy returns a Proxy whose OnError reports land in the returned log,
// served on a real listener at the returned base URL.
func newProxy(t testing.TB) (*Proxy, string, *errorLog) {
	t.Helper()
	log := &errorLog{}
	p := New(Options{OnError: log.onError})
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return p, srv.URL, log
}

// activate puts a new backend for addr in front and returns it.
func activate(p *Proxy, id, addr string) *Backend {
	b := NewBackend(id, addr)
	p.Swap(b)
	return b
}

// newClient is a keep-alive HTTP client of its own, so that tests do not
// share (or leak) http.DefaultTransport's idle connections.
func newClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// get fetches url and returns the status and body.
func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// wantCounts checks b's counters.
func wantCounts(t testing.TB, b *Backend, http, ws int64) {
	t.Helper()
	if h, w := b.Connections(); h != http || w != ws {
		t.Errorf("%s Connections() = (%d, %d), want (%d, %d)", b.ReleaseID(), h, w, http, ws)
	}
}

// waitCounts waits until b's counters are (http, ws).
func waitCounts(t testing.TB, b *Backend, http, ws int64) {
	t.Helper()
	testutil.Eventually(t, fmt.Sprintf("%s Connections() = (%d, %d)", b.ReleaseID(), http, ws), func() bool {
		h, w := b.Connections()
		return h == http && w == ws
	})
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func wsURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/ws" }

// dialWS opens a WebSocket through the proxy at base.
func dialWS(t testing.TB, base string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsURL(base), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL(base), err)
	}
	t.Cleanup(func() { _ = c.CloseNow() }) // most tests have closed it already
	return c
}

// echo sends msg and returns the reply.
func echo(t testing.TB, c *websocket.Conn, msg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read reply to %q: %v", msg, err)
	}
	return string(got)
}

// serveConns is the accept loop of the hand-written apps of these tests:
// it listens on 127.0.0.1:0 and, for the n-th connection (from 1), calls
// accepted on the accept loop (so whatever it records is in accept order)
// and runs the function it returns, if any, on a goroutine of its own,
// closing the connection after. At cleanup it closes the listener and every
// connection still open (the proxy's pooled ones too) and waits for the
// goroutines. It returns the app's address.
func serveConns(tb testing.TB, accepted func(n int, c net.Conn) func()) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			serve := accepted(n, c)
			if serve == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve()
			}()
		}
	}()
	tb.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
