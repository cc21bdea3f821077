package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests come from a hostile review of the event loop; each failed
// before the fix its comment names.

// loopTestThreads is the loop's threads in the tests: more than one, so
// every test also runs connections given back and handed off across
// threads.
const loopTestThreads = 2

func (l *Loop) servedCount() uint64 { s, _ := l.Stats(); return s }
func (l *Loop) handedCount() uint64 { _, h := l.Stats(); return h }

type loopServerT struct {
	lp   *Loop
	addr string
	cc   *ClientConns
	srv  *http.Server
	ran  chan error
	// failed: the loop is to end with an error (a test broke a thread).
	failed bool
}

// loopServer serves p through an event loop the way the daemon does: the
// loop takes the listener, and the net/http server, through ClientConns
// (parking in store, if any), the connections it gives up. At cleanup it
// stops both in the daemon's order and checks that the loop ended well;
// a test may stop them itself first.
func loopServer(t testing.TB, p *Proxy, store FDStore) *loopServerT {
	t.Helper()
	if runtime.GOMAXPROCS(0) < loopTestThreads+1 {
		prev := runtime.GOMAXPROCS(loopTestThreads + 1) // a busy thread keeps its P between events
		t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lp, err := p.NewLoop(ln, loopTestThreads, nil)
	if err != nil {
		t.Fatal(err)
	}
	cc := NewClientConns(store)
	cc.ReturnTo(lp)
	srv := &http.Server{Handler: p, ConnState: cc.ConnState, ConnContext: cc.ConnContext}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(cc.Listener(lp.Listener()))
	}()
	f := &loopServerT{lp: lp, addr: ln.Addr().String(), cc: cc, srv: srv, ran: make(chan error, 1)}
	go func() { f.ran <- lp.Run() }()
	t.Cleanup(func() {
		lp.Stop()
		select {
		case err := <-f.ran:
			if (err != nil) != f.failed {
				t.Errorf("loop: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the loop did not stop")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		lp.WaitHandedOff(ctx)
		_, _ = cc.Stop(ctx, false)
		_ = srv.Close()
		<-served
		_ = ln.Close()
		p.Close()
	})
	return f
}

// A request waiting for its answer when the loop stops goes to the
// net/http path with the answer pending, and is answered from it: never
// sent to the app a second time, and its count ends. (Before: ServeHTTP
// looked for pending answers only while a loop ran, so the GET went to
// the app twice and Backend.http stayed at 1.)
func TestLoopPendingAtStop(t *testing.T) {
	dups, leaks := 0, 0
	const rounds = 20
	for i := 0; i < rounds; i++ {
		var hits atomic.Int32
		started := make(chan struct{}, 4)
		release := make(chan struct{})
		p := New(Options{})
		_, app := upstream(t, "v1", func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			started <- struct{}{}
			<-release
			_, _ = io.WriteString(w, "part one ")
			w.(http.Flusher).Flush() // chunked: the loop hands it over pending
			_, _ = io.WriteString(w, "part two")
		})
		b := activate(p, "v1", app)
		f := loopServer(t, p, nil)
		c, br := dialFront(t, f.addr)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
		<-started
		f.lp.Stop()
		close(release)
		head, err := readHeadLines(br)
		if err != nil {
			t.Fatalf("round %d: %q %v", i, head, err)
		}
		_, _ = readChunked(br)
		time.Sleep(100 * time.Millisecond)
		if hits.Load() > 1 {
			dups++
		}
		if h, _ := b.Connections(); h != 0 {
			leaks++
		}
	}
	if dups > 0 || leaks > 0 {
		t.Errorf("of %d rounds: %d sent the GET twice, %d left Backend.http above 0", rounds, dups, leaks)
	}
}

// A client that does not read its answers keeps the loop running after
// Stop (its answer is half written), but Close, which the daemon calls when
// the grace period ends, ends it at once. (Before: nothing did, and the
// daemon's stop hung.)
func TestLoopCloseCutsANonReader(t *testing.T) {
	f := largeAnswers(t, 200<<10)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, strings.Repeat("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 40))
	time.Sleep(500 * time.Millisecond)
	f.lp.Stop()
	select {
	case <-f.lp.Done():
		t.Fatal("the loop ended with an answer half written: the test did not make a client that does not read")
	case <-time.After(time.Second):
	}
	f.lp.Close()
	select {
	case <-f.lp.Done():
	case <-time.After(5 * time.Second):
		t.Errorf("the loop has not returned 5s after Close (served %d)", f.lp.servedCount())
	}
}

// At a restart, the idle connections the loop hands off are all parked,
// none closed: the daemon waits for net/http to accept them
// (WaitHandedOff) before ClientConns.Stop closes the hand-off listener.
func TestLoopStopParksEveryIdleConnection(t *testing.T) {
	store := newFDStore(t)
	p := New(Options{})
	_, app := upstream(t, "v1", nil)
	activate(p, "v1", app)
	f := loopServer(t, p, store)
	const n = 400
	for range n { // each stays open (dialFront closes it at cleanup)
		c, br := dialFront(t, f.addr)
		if got := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1); got[0].body != "v1" {
			t.Fatal(got[0])
		}
	}
	// The daemon's stopServing, park = true.
	f.lp.Stop()
	<-f.lp.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.lp.WaitHandedOff(ctx)
	parked, err := f.cc.Stop(ctx, true)
	if parked != n {
		t.Errorf("parked %d of %d idle connections (%v); the rest were closed", parked, n, err)
	}
}

// A GET the app closes on without answering reaches the app no more
// often through the loop than through the net/http path alone, on a new
// app connection and on a pooled one (where both paths may retry once on
// a new connection): the loop's failed send counts as the net/http
// path's own. (Before: the net/http path sent it again as a new request.)
func TestLoopResendCount(t *testing.T) {
	var hits atomic.Int32
	_, app := upstream(t, "v1", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			hits.Add(1)
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close() // no byte of an answer
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	// boom sends GET /boom on a new client connection, after warm if set
	// (which pools an app connection), and counts what reached the app.
	boom := func(front, warm string) int32 {
		c, br := dialFront(t, front)
		if warm != "" {
			exchange(t, c, br, warm, 1)
		}
		hits.Store(0)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
		h, err := readWireHead(br)
		t.Logf("answer %q %v", h.line, err)
		time.Sleep(200 * time.Millisecond)
		return hits.Load()
	}
	for _, warm := range []string{"", "GET /warm HTTP/1.1\r\nHost: a\r\n\r\n"} {
		plain, url, _ := newProxy(t)
		activate(plain, "v1", app)
		viaHTTP := boom(strings.TrimPrefix(url, "http://"), warm)
		p := New(Options{})
		activate(p, "v1", app)
		viaLoop := boom(loopServer(t, p, nil).addr, warm)
		t.Logf("pooled %v: GET /boom reached the app %d times via net/http alone, %d via the loop", warm != "", viaHTTP, viaLoop)
		if viaHTTP == 0 || viaLoop > viaHTTP {
			t.Errorf("pooled %v: the app saw GET /boom %d times through the loop, %d through net/http alone", warm != "", viaLoop, viaHTTP)
		}
	}
}

// An idle connection keeps no large buffer after a large answer. (Before:
// 200 idle connections that had one 250 KiB answer each held 50 MiB.)
func TestLoopIdleConnectionsKeepNoLargeBuffers(t *testing.T) {
	f := largeAnswers(t, 250<<10)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	const n = 200
	for i := 0; i < n; i++ {
		c, br := dialFront(t, f.addr)
		exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	}
	time.Sleep(100 * time.Millisecond) // the loop trims after the last write
	after := heap()
	t.Logf("%d idle keep-alive connections after one 250 KiB answer each: heap in use +%d MiB (served %d)", n, (after-before)>>20, f.lp.servedCount())
	if f.lp.servedCount() != n {
		t.Fatalf("the loop served %d of %d", f.lp.servedCount(), n)
	}
	if grown := int64(after) - int64(before); grown > 16<<20 {
		t.Errorf("heap grew by %d MiB: idle connections keep their answers' buffers", grown>>20)
	}
}

// largeAnswers serves, through a loop, an app that answers every request
// with size bytes and their Content-Length (the loop frames it itself).
func largeAnswers(t *testing.T, size int) *loopServerT {
	t.Helper()
	p := New(Options{})
	body := strings.Repeat("x", size)
	_, app := upstream(t, "v1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = io.WriteString(w, body)
	})
	activate(p, "v1", app)
	return loopServer(t, p, nil)
}

// While the loop cannot serve (here: an observer that reads the request,
// as the access log does), a keep-alive connection stays on the net/http
// path instead of crossing loop → net/http → loop for every request (a
// descriptor copy, a wake-up and a new net/http connection each time,
// about 3.4 × the cost of staying). Once the loop can serve again (a
// release without that observer), the connection comes back at its next
// boundary.
func TestLoopLeavesConnectionsWhileItCannotServe(t *testing.T) {
	p := New(Options{Observe: func(releaseID, _ string) Observer {
		if releaseID == "r1" {
			return &resultCounter{} // reads the request
		}
		return nil
	}})
	_, app := upstream(t, "app", nil)
	activate(p, "r1", app)
	lp, front := loopFront(t, p)
	c, br := dialFront(t, front)
	const n = 20
	for range n {
		exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	}
	if served, handed := lp.Stats(); served != 0 || handed != 1 {
		t.Fatalf("%d requests the loop cannot serve on one connection: served %d, handed off %d times; want 0 and 1", n, served, handed)
	}
	activate(p, "r2", app)
	exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1) // its boundary gives the connection back
	for range n {
		exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	}
	if served, handed := lp.Stats(); served != n || handed != 1 {
		t.Fatalf("after the switch to a release the loop serves: served %d, handed off %d times; want %d and 1", served, handed, n)
	}
}

// A thread whose wait fails ends (it cannot happen with a valid epoll
// descriptor; here one is replaced under it) and says so; the other
// threads take every new connection, none is queued for the dead one.
func TestLoopThreadThatFailsTakesNothing(t *testing.T) {
	reported := make(chan error, 4)
	p := New(Options{OnError: func(_ string, err error) {
		select {
		case reported <- err:
		default:
		}
	}})
	_, app := upstream(t, "app", nil)
	activate(p, "r1", app)
	f := loopServer(t, p, nil)
	f.failed = true
	lp, front := f.lp, f.addr
	dead := lp.threads[1]
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup2(null, dead.ep); err != nil { // its next wait fails: EINVAL
		t.Fatal(err)
	}
	unix.Close(null)
	dead.backMu.Lock()
	dead.poke()
	dead.backMu.Unlock()
	select {
	case err := <-reported:
		if !strings.Contains(err.Error(), "an event loop thread stopped") {
			t.Errorf("report: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the thread's end was not reported")
	}
	for i := range 4 {
		c, br := dialFront(t, front)
		if got := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1); got[0].body != "app" {
			t.Fatalf("connection %d: %s", i, got[0])
		}
	}
	dead.backMu.Lock()
	queued := len(dead.back)
	dead.backMu.Unlock()
	if queued != 0 {
		t.Errorf("%d connections queued for the dead thread", queued)
	}
}

// A head sent too slowly is cut off when the daemon's ReadHeaderTimeout
// (loopHead) has passed since its first byte, as net/http cuts off its
// own; it is not handed to net/http, which would give it that time again.
// A new connection that sends nothing gets the same time from its accept
// (as on net/http), not the idle timeout of a connection between
// requests.
func TestLoopSlowHeadClosedAtTheHeadTimeout(t *testing.T) {
	prev := loopHead
	loopHead = time.Second
	t.Cleanup(func() { loopHead = prev })
	for _, sent := range []string{"GET / HTTP/1.1\r\nHo", ""} {
		lp, front := plainLoop(t)
		c, err := net.Dial("tcp", front)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		if _, err := io.WriteString(c, sent); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(make([]byte, 64))
		if n != 0 || err != io.EOF {
			t.Fatalf("%q: read %d bytes, %v: want the connection closed, unanswered", sent, n, err)
		}
		if took := time.Since(start); took < loopHead-50*time.Millisecond { // the loop's clock starts at its accept
			t.Fatalf("%q: closed after %v, before the head timeout (%v)", sent, took, loopHead)
		}
		if served, handed := lp.Stats(); served != 0 || handed != 0 {
			t.Fatalf("%q: served %d, handed off %d: want neither", sent, served, handed)
		}
	}
}

// A connection the loop hands off again and again (here: only POSTs) goes
// back to it less and less often, so the round trip between the paths is
// not paid per request; one GET the loop serves clears that, and a POST
// between GETs comes straight back.
func TestLoopBouncesBackOff(t *testing.T) {
	lp, front := plainLoop(t)
	c, br := dialFront(t, front)
	post := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx"
	get := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	for range 20 {
		exchange(t, c, br, post, 1)
	}
	// Handed off at POSTs 1, 2, 4, 8 and 16: after the k-th hand-off in
	// a row it stays 2^(k-1)-1 requests on net/http.
	if served, handed := lp.Stats(); served != 0 || handed != 5 {
		t.Fatalf("20 POSTs on one connection: served %d, handed off %d times; want 0 and 5", served, handed)
	}
	for i := 0; lp.servedCount() == 0; i++ {
		if i == 64 {
			t.Fatal("64 GETs after the POSTs, and the loop has served none")
		}
		exchange(t, c, br, get, 1)
	}
	_, handed := lp.Stats()
	exchange(t, c, br, post, 1)
	served := lp.servedCount()
	// net/http may read the next GET's first bytes with the POST's answer
	// (then it serves that GET itself); the one after is the loop's.
	for range 2 {
		exchange(t, c, br, get, 1)
	}
	if s, h := lp.Stats(); h != handed+1 || s < served+1 {
		t.Fatalf("a POST between GETs: handed %d (was %d), served %d (was %d): want it handed once and the loop serving again", h, handed, s, served)
	}
}
