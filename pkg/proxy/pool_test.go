package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"golang.org/x/sys/unix"
)

// plainApp is an HTTP/1.1 app whose connections the test can reach: it
// answers every request with its path, counts the connections open on its
// side, and hands each new one to conns, so a test can write on it
// whatever it likes.
type plainApp struct {
	addr  string
	open  atomic.Int64
	conns chan net.Conn
}

func newPlainApp(t *testing.T) *plainApp {
	t.Helper()
	app := &plainApp{conns: make(chan net.Conn, 16)}
	app.addr = serveConns(t, func(_ int, c net.Conn) func() {
		app.open.Add(1)
		app.conns <- c
		return func() {
			defer app.open.Add(-1)
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return // the proxy closed it, or the test did
				}
				if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path); err != nil {
					return
				}
			}
		}
	})
	return app
}

// inQueue returns how many bytes wait unread in the kernel's receive
// queue of pc's socket.
func inQueue(t *testing.T, pc *pconn) int {
	t.Helper()
	n, err := unix.IoctlGetInt(pc.fd, unix.SIOCINQ)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUnsolicitedResponseNeverReachesTheNextRequest: an app writes a
// whole extra response on a keep-alive connection right after answering on
// it. Whenever the next request comes — here at once, long before any idle
// timeout — it must get its own answer on a fresh connection, and OnError
// hears about the discarded one.
func TestUnsolicitedResponseNeverReachesTheNextRequest(t *testing.T) {
	app := newPlainApp(t)
	p, url, log := newProxy(t)
	b := activate(p, "v1", app.addr)
	client := newClient(t)
	for round := range 3 {
		if code, body := get(t, client, fmt.Sprintf("%s/first-%d", url, round)); code != 200 || body != fmt.Sprintf("/first-%d", round) {
			t.Fatalf("round %d: %d %q", round, code, body)
		}
		appSide := recv(t, "the app's side of the connection", app.conns)
		if _, err := io.WriteString(appSide, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen"); err != nil {
			t.Fatal(err)
		}
		// Wait, without taking it, until the planted answer sits in the
		// pooled connection's receive queue, behind all the proxy read.
		f := b.fast.Load()
		pc := recv(t, "the pooled connection", f.idle)
		testutil.Eventually(t, "the planted answer at the proxy", func() bool { return inQueue(t, pc) > 0 })
		f.idle <- pc
		want := fmt.Sprintf("/second-%d", round)
		if code, body := get(t, client, url+want); code != 200 || body != want {
			t.Fatalf("round %d: the next request got %d %q, want %q", round, code, body, want)
		}
	}
	errs := log.all()
	if len(errs) != 3 || !strings.Contains(errs[0], `answer no request, starting "HTTP/1.1 200 OK\r\n"`) {
		t.Errorf("OnError reports: %q, want one per discarded connection naming what the app sent", errs)
	}
}

// TestBufferedUnsolicitedBytesDiscarded: the extra response arrived with
// the real one and sits in the connection's read buffer, not the kernel's.
func TestBufferedUnsolicitedBytesDiscarded(t *testing.T) {
	addr, conns := rawUpstream(t, func(c int, r *http.Request) (string, bool) {
		if c == 1 {
			return ok(r.URL.Path) + ok("stolen"), false
		}
		return ok(r.URL.Path), false
	})
	p, url, log := newProxy(t)
	activate(p, "v1", addr)
	client := newClient(t)
	for _, path := range []string{"/a", "/b", "/c"} {
		if code, body := get(t, client, url+path); code != 200 || body != path {
			t.Fatalf("%s: %d %q", path, code, body)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d upstream connections, want 2 (the poisoned one replaced once)", n)
	}
	if errs := log.all(); len(errs) != 1 {
		t.Errorf("OnError reports: %q, want 1", errs)
	}
}

// TestSweepClosesOnlyExpiredConnections runs a sweep by hand: a connection
// idle for less than the timeout stays pooled, one idle for longer is
// closed, and so is one the app closed meanwhile.
func TestSweepClosesOnlyExpiredConnections(t *testing.T) {
	app := newPlainApp(t)
	p, url, _ := newProxy(t)
	b := activate(p, "v1", app.addr)
	f := newFastTransport(app.addr, p.dialer, p.transport, 8, time.Hour, p.buffers, nil)
	b.fast.Store(f)
	t.Cleanup(f.closeIdle)
	// Two connections, both used once and pooled.
	var pcs []*pconn
	for range 2 {
		pc, reused, err := f.get(context.Background())
		if err != nil || reused {
			t.Fatalf("dial: %v (reused %v)", err, reused)
		}
		pcs = append(pcs, pc)
	}
	for i, pc := range pcs {
		path := fmt.Sprintf("/%d", i)
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		resp, err := f.exchange(pc, req, headWhole, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if body, _ := io.ReadAll(resp.Body); string(body) != path {
			t.Fatalf("got %q, want %q", body, path)
		}
		resp.Body.Close() // read to the end: back to the pool
	}
	if n := len(f.idle); n != 2 {
		t.Fatalf("%d pooled connections, want 2", n)
	}

	f.sweep()
	if n := len(f.idle); n != 2 {
		t.Fatalf("%d pooled after a sweep of young connections, want 2", n)
	}
	old := <-f.idle
	old.idleSince = time.Now().Add(-2 * time.Hour)
	f.idle <- old
	f.sweep()
	if n := len(f.idle); n != 1 {
		t.Fatalf("%d pooled after a sweep with one expired connection, want 1", n)
	}
	testutil.Eventually(t, "the app to see the expired connection closed", func() bool { return app.open.Load() == 1 })

	young := <-f.idle
	_ = young.conn.(*net.TCPConn).CloseRead() // shows up as EOF to the sweep's peek
	f.idle <- young
	f.sweep()
	if n := len(f.idle); n != 0 {
		t.Errorf("%d pooled after a sweep found a closed connection, want 0", n)
	}
}

// TestIdleConnectionsClosedAfterTimeout: with nothing to do, a backend's
// pooled connections are closed by themselves once idle for the timeout;
// they do not wait for the next request or for the release to stop.
func TestIdleConnectionsClosedAfterTimeout(t *testing.T) {
	app := newPlainApp(t)
	p, url, _ := newProxy(t)
	b := activate(p, "v1", app.addr)
	f := newFastTransport(app.addr, p.dialer, p.transport, 8, 50*time.Millisecond, p.buffers, nil)
	b.fast.Store(f)
	t.Cleanup(f.closeIdle)
	if code, body := get(t, newClient(t), url+"/x"); code != 200 || body != "/x" {
		t.Fatalf("%d %q", code, body)
	}
	testutil.Eventually(t, "the idle connection closed at the app", func() bool { return app.open.Load() == 0 })
	if n := len(f.idle); n != 0 {
		t.Errorf("%d pooled connections after the idle timeout", n)
	}
	// The next request dials again, and the sweep starts over for it.
	if code, body := get(t, newClient(t), url+"/y"); code != 200 || body != "/y" {
		t.Fatalf("after the sweep: %d %q", code, body)
	}
	testutil.Eventually(t, "the second idle connection closed at the app", func() bool { return app.open.Load() == 0 })
}

// TestRetiredBackendPoolsNothing: a connection that comes back after
// CloseConnections (its request was in flight) is closed, not pooled.
func TestRetiredBackendPoolsNothing(t *testing.T) {
	addr, entered, release := slowUpstream(t)
	p, url, _ := newProxy(t)
	b := activate(p, "v1", addr)
	done := make(chan struct{})
	client := newClient(t)
	go func() {
		defer close(done)
		resp, err := client.Get(url + "/")
		if err != nil {
			t.Errorf("GET: %v", err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}()
	<-entered
	b.CloseConnections()
	close(release)
	<-done
	waitCounts(t, b, 0, 0)
	if n := len(b.fast.Load().idle); n != 0 {
		t.Errorf("%d connections pooled on a retired backend, want 0", n)
	}
}

// BenchmarkIdleCheck is what every reuse of a pooled connection now
// costs on top of what it did: one peek at a quiet connection.
func BenchmarkIdleCheck(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if peer := <-accepted; peer != nil {
		defer peer.Close()
	}
	pc := &pconn{conn: c, fd: sockFD(rawConn(c)), br: bufio.NewReader(c)}
	b.ReportAllocs()
	for b.Loop() {
		if pc.idleState() != idleQuiet {
			b.Fatal("a quiet connection did not look quiet")
		}
	}
}
