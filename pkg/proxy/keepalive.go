package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Client connections across a daemon restart.
//
// Closing an idle keep-alive connection races with its client: a request
// sent just as the server closes is lost (and a POST is not retried by
// clients). So a restart does not close them: ClientConns parks each one
// in the fd store at its next request boundary, and the next daemon
// serves its next request through the same http.Server (Resume, then the
// Listener yields it like a new connection).
//
// Why no byte of a request is lost or read twice: a connection is parked
// only from inside the Read with which net/http starts reading its next
// request, and only when net/http holds no byte of that request and this
// Read consumed none.
//
//   - The request boundary: the Read is the first one after net/http said
//     the connection is idle (ConnState StateIdle: the response was
//     written and flushed, and the read net/http keeps pending while a
//     handler runs was stopped), or the first one of the connection.
//   - net/http holds nothing: it reads through a buffer, and asks Read to
//     fill the whole buffer exactly when the buffer is empty. The first
//     Read of a connection shows that size (nothing was read before). A
//     Read at a later boundary that asks for less means net/http holds
//     bytes of the next request already (a pipelined request, or the one
//     byte its pending read took while the last response went out): such
//     a connection is not parked there; its request is served, and it is
//     parked at its next boundary.
//   - The Read consumed nothing: it is a plain Read, and a Read that ends
//     with a timeout and no byte has consumed none. Stop wakes a Read
//     waiting at a boundary by setting a read deadline in the past; the
//     decision "park" is one compare-and-swap on the connection's phase,
//     taken by Stop before it sets that deadline. If the client's bytes
//     arrive exactly then, the Read may return them instead of the
//     timeout: those bytes are the start of a request, which is then read
//     to its end and answered (the deadline net/http had set restored),
//     and the connection is parked at its next boundary. So no byte read
//     is ever dropped, and no connection is parked after a read.
//
// Waiting with a plain Read rather than for readability first (a
// MSG_PEEK in the poller, then the Read) saves a system call per request
// (docs/performance.md, issue #17).
//
// A parked connection's descriptor is stored first and only then is this
// process's own closed, so the socket never closes in between; whatever
// the client sends meanwhile waits in the kernel's socket buffer for the
// next daemon. A connection never parked (no store, the store full, a
// request still running when the drain time ends) is closed as before.

// clientStorePrefix starts the fd store name of a parked client
// connection: "ka.CONN", CONN 16 random hex digits.
const clientStorePrefix = "ka."

// ClientConns tracks the client connections of one http.Server so a stop
// can end each at a request boundary (Stop) and a restart can park the
// idle ones for the next daemon. Serve the server on Listener and set its
// ConnState to ConnState. Methods are safe for concurrent use.
type ClientConns struct {
	store FDStore // nil: Stop closes instead of parking

	stopping atomic.Bool // Stop began: connections end at their boundary
	park     atomic.Bool // ... and are parked, not closed

	mu        sync.Mutex
	conns     map[*clientConn]struct{}
	changed   chan struct{} // closed and replaced when a connection leaves conns
	resumed   []*clientConn // taken back by Resume, not yet accepted
	listeners []net.Listener

	parked atomic.Int64

	// loop, when set (ReturnTo), takes back every connection at its next
	// request boundary: the event loop serves what it can of it again.
	loop atomic.Pointer[Loop]

	// betweenWake, if set (tests only), runs in a wake between the
	// decision to end the connection and the deadline that wakes its Read.
	betweenWake func(*clientConn)
}

// NewClientConns returns a tracker that parks connections in store when
// stopped with park true; store nil closes them instead.
func NewClientConns(store FDStore) *ClientConns {
	return &ClientConns{store: store, conns: map[*clientConn]struct{}{}, changed: make(chan struct{})}
}

// CanPark says whether Stop(ctx, true) parks connections: it has a store.
func (cc *ClientConns) CanPark() bool { return cc.store != nil }

// Listener returns ln with every connection it accepts tracked. Before
// the first of those it yields the connections Resume took back. Once
// Stop began, Accept fails with http.ErrServerClosed, so Serve returns
// as after Shutdown.
func (cc *ClientConns) Listener(ln net.Listener) net.Listener {
	l := &clientListener{Listener: ln, cc: cc}
	cc.mu.Lock()
	cc.listeners = append(cc.listeners, l)
	cc.mu.Unlock()
	return l
}

type clientListener struct {
	net.Listener
	cc *ClientConns
}

func (l *clientListener) Accept() (net.Conn, error) {
	if c := l.cc.nextResumed(); c != nil {
		return c, nil
	}
	c, err := l.Listener.Accept()
	if err != nil {
		if l.cc.stopping.Load() {
			return nil, http.ErrServerClosed
		}
		return nil, err
	}
	return l.cc.track(c), nil
}

func (cc *ClientConns) nextResumed() *clientConn {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.resumed) == 0 || cc.stopping.Load() {
		return nil
	}
	c := cc.resumed[0]
	cc.resumed = cc.resumed[1:]
	return c
}

// track wraps c; a connection without a socket of its own (no
// SyscallConn) is served untracked: it can neither wait without reading
// nor be stored.
func (cc *ClientConns) track(c net.Conn) net.Conn {
	rc := rawConn(c)
	if rc == nil {
		return c
	}
	w := &clientConn{Conn: c, rc: rc, cc: cc}
	cc.mu.Lock()
	cc.conns[w] = struct{}{}
	cc.mu.Unlock()
	return w
}

func (cc *ClientConns) forget(c *clientConn) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if _, ok := cc.conns[c]; !ok {
		return
	}
	delete(cc.conns, c)
	close(cc.changed)
	cc.changed = make(chan struct{})
}

// clientConnKey is the context key under which ConnContext puts a
// tracked connection, for the requests it serves (clientWatch).
type clientConnKey struct{}

// ConnContext is the http.Server's ConnContext hook: the requests of a
// tracked connection find it in their context, and the proxy lets the
// connection itself watch for the client going away (clientWatch)
// rather than registering on each request's context. Optional: without
// it, requests are served the same, at a few more allocations each.
func (cc *ClientConns) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if w, ok := c.(*clientConn); ok {
		return context.WithValue(ctx, clientConnKey{}, w)
	}
	return ctx
}

// ConnState is the http.Server's ConnState hook: it marks the request
// boundaries, and lets hijacked connections (WebSockets, which the proxy
// hands over itself) go.
func (cc *ClientConns) ConnState(c net.Conn, s http.ConnState) {
	w, ok := c.(*clientConn)
	if !ok {
		return
	}
	switch s {
	case http.StateIdle:
		w.phase.Store(phaseBoundary)
	case http.StateHijacked:
		w.phase.Store(phaseDone)
		cc.forget(w)
	case http.StateClosed:
		cc.forget(w)
	}
}

// Stop ends the server's client connections gracefully: call it once the
// server must take no new connection. It closes the listeners (Listener),
// then every connection ends at its next request boundary, without a
// byte of its next request read: parked in the store when park is true
// and the store takes it, closed otherwise. Requests in flight finish
// first and their answers go out. Stop returns once no connection is
// left, or when ctx ends, with an error saying how many are left; close
// those with http.Server.Close. It returns how many were parked.
func (cc *ClientConns) Stop(ctx context.Context, park bool) (parked int64, err error) {
	cc.park.Store(park && cc.store != nil)
	cc.stopping.Store(true) // after park: a boundary that sees stopping reads park
	cc.mu.Lock()
	for _, l := range cc.listeners {
		_ = l.Close() // the socket itself may be systemd's; only ours closes
	}
	pending := cc.resumed
	cc.resumed = nil
	for c := range cc.conns {
		c.wake()
	}
	cc.mu.Unlock()
	for _, c := range pending {
		_ = c.end() // never served: nothing of it was read
		_ = c.Close()
	}
	for {
		cc.mu.Lock()
		n, changed := len(cc.conns), cc.changed
		cc.mu.Unlock()
		if n == 0 {
			return cc.parked.Load(), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return cc.parked.Load(), fmt.Errorf("%d client connections still busy: %w", n, ctx.Err())
		}
	}
}

// Resume takes back the idle client connections a previous daemon parked
// (files named "ka.CONN", as LISTEN_FDNAMES gave them; f.Name()): each is
// removed from store (nil: none) before anything of it is read, and
// Listener yields it next, to be served like a new connection. Files with
// other names are returned untouched. It returns how many it took.
func (cc *ClientConns) Resume(store FDStore, files []*os.File) (resumed int, rest []*os.File) {
	for _, f := range files {
		if !strings.HasPrefix(f.Name(), clientStorePrefix) {
			rest = append(rest, f)
			continue
		}
		if store != nil {
			// Before the first read: a daemon that dies serving it must
			// not leave it to the next one in the middle of a request.
			store.Remove([]string{f.Name()})
		}
		c, err := net.FileConn(f)
		_ = f.Close() // c has a descriptor of its own
		if err != nil {
			continue // not a socket: nothing to serve
		}
		w, ok := cc.track(c).(*clientConn)
		if !ok {
			_ = c.Close()
			continue
		}
		cc.mu.Lock()
		cc.resumed = append(cc.resumed, w)
		cc.mu.Unlock()
		resumed++
	}
	return resumed, rest
}

// Phases of a client connection. Only its own goroutine (net/http's, in
// Read and ConnState) moves it, except Stop's wake: phaseWaiting to
// phaseWaking.
const (
	phaseBoundary int32 = iota // the next Read starts the next request
	phaseWaiting               // that Read waits, nothing read yet
	phaseWaking                // Stop woke the waiting Read: it ends the connection if it read nothing
	phaseActive                // a request is read or served: Reads go straight through
	phaseDone                  // parked, hijacked or closing
)

// clientConn is a client connection of the server (see ClientConns).
type clientConn struct {
	net.Conn
	rc    syscall.RawConn
	cc    *ClientConns
	phase atomic.Int32
	// wakeMu is held by Stop's wake while it moves the phase to
	// phaseWaking and sets the deadline that wakes the Read; a Read that
	// got bytes all the same takes it to wait for that deadline to be set
	// before it puts net/http's back. Only that race takes it: the request
	// path never does.
	wakeMu sync.Mutex
	// fill is the size of net/http's read buffer, from the connection's
	// first Read; readDeadline is the read deadline net/http set last.
	// Only the connection's goroutine reads or writes them (until it is
	// hijacked: phaseDone).
	fill         int
	readDeadline time.Time
	// backSkip is how many more boundaries the connection stays before it
	// goes back to the loop (backTo); set from the handedConn's bounces.
	backSkip    int
	backSkipSet bool
	// upstream is the app connection the request being served waits on,
	// for a failed Read to abort (see watch); gone says a Read failed.
	upstream atomic.Pointer[pconn]
	gone     atomic.Bool
}

func (c *clientConn) Read(p []byte) (n int, err error) {
	if c.phase.Load() != phaseBoundary {
		n, err = c.Conn.Read(p)
		if err != nil {
			c.readFailed(err)
		}
		return n, err
	}
	// Every request ends the watch it started (clientWatch.end) before
	// its response is done; should one ever be left, it must not outlive
	// its request: the app connection is back in the pool by now.
	c.upstream.Store(nil)
	if c.fill == 0 {
		c.fill = len(p)
	}
	if h, ok := c.Conn.(*handedConn); len(p) != c.fill || ok && h.holding() {
		// net/http holds part of the next request already, or the event
		// loop read it (a hand-off): serve it.
		c.phase.Store(phaseActive)
		n, err = c.Conn.Read(p)
		if err != nil {
			c.readFailed(err)
		}
		return n, err
	}
	c.phase.Store(phaseWaiting)
	if c.cc.stopping.Load() {
		return 0, c.end()
	}
	if l := c.cc.loop.Load(); l != nil && c.backTo(l) {
		return 0, io.EOF // net/http closes its descriptor; the loop has its own
	}
	n, err = c.Conn.Read(p)
	if c.phase.CompareAndSwap(phaseWaiting, phaseActive) {
		if err != nil {
			c.readFailed(err)
		}
		return n, err // not woken: whatever the Read says goes to net/http
	}
	if err != nil {
		c.readFailed(err)
	}
	// Stop woke this Read (phaseWaking).
	if n == 0 {
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, err // the connection broke or the client closed it: nothing to park
		}
		return 0, c.end() // nothing was read
	}
	// The next request's first bytes came as the deadline fell: serve
	// that request, and end the connection at its next boundary (Stop
	// set stopping before it woke anyone). Once wake has set its
	// deadline, put back the one net/http set, so the rest of the
	// request is read under it and not cut short.
	c.wakeMu.Lock()
	c.phase.Store(phaseActive)
	_ = c.Conn.SetReadDeadline(c.readDeadline) // as the Read just now: it fails only on a closed connection, which the next Read reports
	c.wakeMu.Unlock()
	return n, err
}

// watch makes the client's going away abort pc, the app connection the
// request now served waits on, until the request ends it (unwatch).
// While a handler runs, net/http keeps a Read pending on the connection
// (the one that cancels the request's context when it fails): that
// Read's error is what aborts pc, so the proxy needs no context.AfterFunc
// per request. Only the connection's goroutine calls it.
func (c *clientConn) watch(pc *pconn) {
	c.upstream.Store(pc)
	if c.gone.Load() {
		c.abortUpstream() // the client left before: abort now
	}
}

// readFailed aborts the watched app connection, if any, when a Read
// fails other than by a deadline: the client went away or the connection
// broke. A deadline is net/http's own (a timeout while reading a request,
// or the end of its pending Read once a handler returned: nothing is
// watched then).
func (c *clientConn) readFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	c.gone.Store(true) // before the abort: a watch that starts now sees it (see watch)
	c.abortUpstream()
}

// abortUpstream takes the watched app connection, if any, and sets a
// deadline in the past on it; whoever takes it out of upstream (this, or
// the request ending: clientWatch.end) owns that decision.
func (c *clientConn) abortUpstream() {
	if pc := c.upstream.Swap(nil); pc != nil {
		_ = pc.conn.SetDeadline(aLongTimeAgo) // fails only once closed: nothing to abort then
	}
}

// SetReadDeadline and SetDeadline remember the read deadline, for Read to
// put back after a wake that came too late (see Read).
func (c *clientConn) SetReadDeadline(t time.Time) error {
	if c.phase.Load() != phaseDone {
		c.readDeadline = t
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *clientConn) SetDeadline(t time.Time) error {
	if c.phase.Load() != phaseDone {
		c.readDeadline = t
	}
	return c.Conn.SetDeadline(t)
}

// wake makes a Read waiting at a boundary end the connection; a
// connection elsewhere ends at its next boundary instead.
func (c *clientConn) wake() {
	c.wakeMu.Lock()
	defer c.wakeMu.Unlock()
	if c.phase.CompareAndSwap(phaseWaiting, phaseWaking) {
		if c.cc.betweenWake != nil {
			c.cc.betweenWake(c)
		}
		_ = c.Conn.SetReadDeadline(aLongTimeAgo) // fails only on a closed connection: nothing left to wake
	}
}

// ReturnTo makes every connection go back to l at its next request
// boundary, with nothing of its next request read (the same boundary a
// stop parks at), so a connection the loop gave up for one request is
// its again for the next.
func (cc *ClientConns) ReturnTo(l *Loop) { cc.loop.Store(l) }

// backTo gives a copy of c's descriptor to l; true if l took it. It is
// the raw socket: ClientConns sits under no TLS layer (the daemon serves
// plain HTTP; a TLS listener would wrap the connection after tracking).
//
// A connection the loop handed off again and again right after taking it
// back (uploads, large answers: what the loop never serves) returns less
// and less often: after its k-th such hand-off in a row it stays for
// 2^(k-1)-1 boundaries (at most 63), so each round trip between the two
// paths (a descriptor copy, a wake-up, a new net/http connection, and a
// pending answer that cannot be spliced) is paid once per many requests
// instead of once per request. One request the loop serves clears it.
func (c *clientConn) backTo(l *Loop) bool {
	h, handed := c.Conn.(*handedConn)
	if handed && !c.backSkipSet {
		c.backSkipSet = true
		if h.bounces > 1 {
			c.backSkip = 1<<(h.bounces-1) - 1
		}
	}
	if c.backSkip > 0 {
		c.backSkip--
		return false
	}
	if !l.p.loopServes(l.p.route.Load()) {
		return false // take would refuse it (saves the descriptor copy)
	}
	var bounces uint8
	if handed {
		bounces = h.bounces
	}
	fd := -1
	if err := c.rc.Control(func(s uintptr) {
		fd, _ = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || fd < 0 {
		return false
	}
	if !l.take(fd, bounces) {
		_ = unix.Close(fd)
		return false
	}
	c.phase.Store(phaseDone)
	return true
}

// end parks the connection if Stop says so and the store takes it, and
// returns io.EOF: net/http then closes it without answering (a client
// that went away), which closes only this process's descriptor.
func (c *clientConn) end() error {
	c.phase.Store(phaseDone)
	if !c.cc.park.Load() {
		return io.EOF
	}
	f, err := fileOf(c.Conn)
	if err != nil {
		return io.EOF
	}
	defer f.Close() // the store has its own copy
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	if c.cc.store.Store([]string{clientStorePrefix + hex.EncodeToString(id[:])}, []*os.File{f}) == nil {
		c.cc.parked.Add(1)
	}
	return io.EOF
}

func (c *clientConn) Close() error {
	c.cc.forget(c)
	return c.Conn.Close()
}

// File and SyscallConn let a hijacked connection be spliced and stored
// like the bare socket (see handOver).
func (c *clientConn) File() (*os.File, error) { return fileOf(c.Conn) }

func (c *clientConn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }
