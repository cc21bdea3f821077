package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// fastTransport sends body-less requests — nearly all proxied traffic —
// over its own keep-alive pool, on the caller's goroutine:
// write the request, read the response head, hand the body to ReverseProxy.
// http.Transport instead passes every request to a writer goroutine and
// every response from a reader goroutine, and keeps a read pending on each
// idle connection; on this hop those hand-offs cost about as much CPU as the
// proxying itself. Requests with a body (uploads, Expect: 100-continue) and
// upgrades keep using http.Transport, which streams both directions at once.
//
// Without a read pending on idle connections, nothing notices what an app
// sends on one between two requests, so every reuse checks first, with one
// non-blocking peek (see pconn.idleState): a connection the app closed
// (keep-alive timeout) shows up as EOF, and one holding bytes nobody asked
// for (an app that answered twice, or let a client split its response
// with CR LF) is discarded, because whatever request went next on it would
// be answered with those bytes — one client would read the response meant
// for, or planted by, another. net/http's Transport discards such
// connections too ("Unsolicited response received on idle HTTP channel").
//
// If a reused connection still fails before any byte of the response
// arrived, the request is sent once more on a fresh connection; that is
// safe because only requests without a body take this path, and only for
// methods that may be repeated.
//
// Idle connections are closed idleTTL after their last use: a sweep runs
// every idleTTL/2 while the pool holds any, so an idle release does not
// keep connections (and their buffers, on both ends) open for as long as
// it lives. The request path pays two atomic loads for that.
type fastTransport struct {
	addr     string
	dialer   *net.Dialer
	fallback *http.Transport // shared by every backend of the Proxy
	idle     chan *pconn     // the pool; a channel, so the request path needs no mutex
	idleTTL  time.Duration
	buffers  *bufferPool
	// report, if set, hears about connections discarded for unsolicited
	// bytes: an app doing that has a bug worth knowing about.
	report func(error)
	// headTimeout bounds the wait for a response head (0: none); set once
	// at creation.
	headTimeout time.Duration
	// proxy and backend, set once at creation by the Proxy that serves
	// backend, let a request that failed on it wait in the crash hold
	// (crashhold.go); nil for a transport of no Proxy.
	proxy   *Proxy
	backend *Backend

	retired  atomic.Bool // closeIdle was called: nothing is pooled any more
	sweeping atomic.Bool // a sweep is scheduled or running
	mu       sync.Mutex  // guards timer; taken once per sweep, never per request
	timer    *time.Timer
}

// pconn is one keep-alive connection to the upstream.
type pconn struct {
	conn net.Conn
	// fd is conn's descriptor, for the peek before each reuse: a raw
	// syscall on it costs no allocation and no descriptor lock, which
	// RawConn.Read would. It is used only by whoever holds the pconn, and
	// the connection is closed only by that holder too, so fd stays valid
	// while in use. -1 when conn has none (never for TCP).
	fd        int
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	// rc waits for the answer without a speculative read (sendAndWait);
	// step is sendStep as a func value, made once per connection, and
	// sending, kind and sendErr are its state during one sendAndWait.
	rc      syscall.RawConn
	step    func(uintptr) bool
	sending *http.Request
	kind    headKind
	sendErr error
	stale   int // what sendStep's peek found (idleQuiet, idleClosed, idleUnsolicited)
}

func newFastTransport(addr string, dialer *net.Dialer, fallback *http.Transport, maxIdle int, idleTTL time.Duration, buffers *bufferPool, report func(error)) *fastTransport {
	return &fastTransport{addr: addr, dialer: dialer, fallback: fallback, idle: make(chan *pconn, maxIdle), idleTTL: idleTTL, buffers: buffers, report: report}
}

// RoundTrip implements http.RoundTripper for what ReverseProxy still
// sends (requests forward does not take); bodies go to the fallback.
func (t *fastTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		return t.roundTripBody(req)
	}
	return t.send(req, headWhole, req.Close, nil)
}

// send writes a request head (kind says how) on a pooled (or new) connection and
// reads the response head. A reused connection that fails before the answer
// began is retried once on a fresh one for repeatable methods: the app
// closed it between our peek and our write, so it never saw the request.
// A request the app cannot have acted on, failed because its process is
// down, waits in the crash hold and is sent once more (crashhold.go).
func (t *fastTransport) send(req *http.Request, kind headKind, closing bool, into http.Header) (*http.Response, error) {
	since := t.epoch()
	resp, retried, err := t.sendPooled(req, kind, closing, into)
	if err != nil && since != nil {
		return t.proxy.recoverUnserved(t.backend, req, since, err, retried, func(nb *Backend, pc *pconn) (*http.Response, error) {
			return nb.fast.Load().resend(pc, req, kind, closing, into)
		})
	}
	return resp, err
}

// epoch is the Proxy's routing epoch as an exchange starts, or nil
// without a Proxy: what the crash hold compares with after a failure.
func (t *fastTransport) epoch() *epoch {
	if t.proxy == nil {
		return nil
	}
	return t.proxy.epoch.Load()
}

// resend sends a request once more, on pc (a connection the crash hold
// dialled to t's app) or on a new connection: never on a pooled one,
// which would allow a second silent retry.
func (t *fastTransport) resend(pc *pconn, req *http.Request, kind headKind, closing bool, into http.Header) (*http.Response, error) {
	if pc == nil {
		var err error
		if pc, err = t.dial(req.Context()); err != nil {
			return nil, err
		}
	}
	resp, err := t.exchange(pc, req, kind, closing, into)
	if err != nil {
		_ = pc.conn.Close() // broken: never pooled again
	}
	return resp, err
}

// sendPooled is send without the crash hold; retried says it sent the
// request a second time, on a fresh connection.
//
// A pooled connection found closed by the app, or holding bytes nobody
// asked for, before anything was written on it (sendStep's peek) never
// carried the request: the next one is taken, for any method, without
// using up the retry.
func (t *fastTransport) sendPooled(req *http.Request, kind headKind, closing bool, into http.Header) (*http.Response, bool, error) {
	for attempt := 0; ; {
		pc, reused, err := t.get(req.Context())
		if err != nil {
			return nil, attempt > 0, err
		}
		resp, err := t.exchange(pc, req, kind, closing, into)
		if err == nil {
			return resp, attempt > 0, nil
		}
		if reused && pc.stale != idleQuiet && req.Context().Err() == nil {
			t.reportStale(pc)
			_ = pc.conn.Close()
			continue
		}
		_ = pc.conn.Close() // broken: never pooled again
		// A timeout is the app's slowness, not a connection it closed: a
		// second try would only double the wait.
		var ne net.Error
		if !reused || attempt > 0 || !repeatable(req) || req.Context().Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, attempt > 0, err
		}
		attempt++
	}
}

// repeatable methods may be sent twice (RFC 9110 §9.2.2); DELETE and PUT
// are idempotent too but rarely sent without a body, and never retried here.
func repeatable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// get returns a live pooled connection (reused = true) or a new one.
func (t *fastTransport) get(ctx context.Context) (*pconn, bool, error) {
	for {
		select {
		case pc := <-t.idle:
			// Closed by the app, or poisoned: sendStep looks, when the
			// request is about to go (see its comment).
			if time.Since(pc.idleSince) > t.idleTTL || pc.rc == nil {
				_ = pc.conn.Close() // expired, or cannot be looked at
				continue
			}
			return pc, true, nil
		default:
		}
		pc, err := t.dial(ctx)
		return pc, false, err
	}
}

// dial opens a new connection to the app.
func (t *fastTransport) dial(ctx context.Context) (*pconn, error) {
	c, err := t.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	rc := rawConn(c)
	pc := &pconn{conn: c, fd: sockFD(rc), br: bufio.NewReaderSize(c, 4<<10), bw: bufio.NewWriterSize(c, 4<<10), rc: rc}
	pc.step = pc.sendStep
	return pc, nil
}

// idleUsable is the sweep's look at a pooled connection: false, and a
// report when the app wrote on it, unless it is open and quiet.
func (t *fastTransport) idleUsable(pc *pconn) bool {
	if pc.stale = pc.idleState(); pc.stale == idleQuiet {
		return true
	}
	t.reportStale(pc)
	return false
}

// reportStale reports a pooled connection found holding bytes nobody
// asked for (before it is closed: the report quotes their start).
func (t *fastTransport) reportStale(pc *pconn) {
	if pc.stale == idleUnsolicited && t.report != nil {
		t.reportUnsolicited(pc.unsolicited())
	}
}

// reportUnsolicited reports a pooled connection discarded because the app
// sent bytes on it unasked, quoting their start up to its first line end:
// the status line of a stray response, not the data in its body. The
// event loop's pool reports through it too.
func (t *fastTransport) reportUnsolicited(start []byte) {
	if t.report == nil {
		return
	}
	start = start[:min(len(start), 32)]
	if i := bytes.IndexByte(start, '\n'); i >= 0 {
		start = start[:i+1]
	}
	t.report(fmt.Errorf("discarded a keep-alive connection to %s: while it was idle the app sent bytes that answer no request, starting %q; the next request on it would have received them",
		t.addr, start))
}

// What a peek at an idle connection found.
const (
	idleQuiet       = iota // nothing to read: open, and in step with us
	idleClosed             // EOF or an error: the app closed it
	idleUnsolicited        // bytes the app sent unasked
)

// idleState peeks at an idle connection without blocking or allocating.
func (pc *pconn) idleState() int {
	if pc.br.Buffered() > 0 {
		return idleUnsolicited
	}
	if pc.fd < 0 {
		return idleClosed // cannot look: do not trust it
	}
	// A raw syscall: MSG_DONTWAIT makes it return at once, so the
	// scheduler need not be told (Syscall6 would, for ~30% more per peek).
	var buf [1]byte
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(pc.fd), uintptr(unsafe.Pointer(&buf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK:
		return idleQuiet
	case errno != 0 || n == 0:
		return idleClosed
	}
	return idleUnsolicited
}

// unsolicited returns the start of what an app sent unasked, for the
// report.
func (pc *pconn) unsolicited() []byte {
	var b []byte
	if n := pc.br.Buffered(); n > 0 {
		b, _ = pc.br.Peek(min(n, 32)) // cannot fail for Buffered() bytes
	} else {
		b = make([]byte, 32)
		n, _, err := syscall.Recvfrom(pc.fd, b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err != nil || n < 0 {
			n = 0
		}
		b = b[:n]
	}
	return b
}

// sockFD returns the descriptor behind rc, or -1.
func sockFD(rc syscall.RawConn) int {
	if rc == nil {
		return -1
	}
	fd := -1
	if rc.Control(func(d uintptr) { fd = int(d) }) != nil {
		return -1
	}
	return fd
}

// put returns a connection to the pool, or closes it when the pool is
// full or the backend retired, and makes sure a sweep will close it once
// it has been idle too long.
func (t *fastTransport) put(pc *pconn) {
	pc.idleSince = time.Now()
	select {
	case t.idle <- pc:
	default:
		_ = pc.conn.Close() // pool full
		return
	}
	// A closeIdle that ran before the send above did not see pc; its
	// retired flag is visible here, so pc is closed one way or the other.
	if t.retired.Load() {
		t.closeIdle()
		return
	}
	if !t.sweeping.Load() && t.sweeping.CompareAndSwap(false, true) {
		t.schedule()
	}
}

// schedule arms the next sweep, unless the backend retired.
func (t *fastTransport) schedule() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.retired.Load() {
		return
	}
	if t.timer == nil {
		t.timer = time.AfterFunc(t.idleTTL/2, t.sweep)
		return
	}
	t.timer.Reset(t.idleTTL / 2)
}

// sweep closes the pooled connections idle for idleTTL or more, and
// those the app closed or wrote to meanwhile, and keeps the others. It runs
// on a timer's goroutine while requests go on: a request that finds the
// pool empty for the moment dials a new connection.
func (t *fastTransport) sweep() {
	now := time.Now()
	// Look at as many as are pooled now, once each: the ones kept go back
	// to the end of the queue.
	for n := len(t.idle); n > 0; n-- {
		var pc *pconn
		select {
		case pc = <-t.idle:
		default:
		}
		if pc == nil {
			break // requests took the rest
		}
		if now.Sub(pc.idleSince) >= t.idleTTL || !t.idleUsable(pc) {
			_ = pc.conn.Close() // idle too long, closed by the app, or poisoned
			continue
		}
		select {
		case t.idle <- pc: // idleSince unchanged: its age goes on counting
		default:
			_ = pc.conn.Close() // requests filled the pool meanwhile
		}
	}
	if t.retired.Load() {
		t.closeIdle() // what went back above after closeIdle emptied the pool
		return
	}
	t.sweeping.Store(false)
	// A put between the loop and the Store above saw sweeping still true
	// and scheduled nothing: look again.
	if len(t.idle) > 0 && t.sweeping.CompareAndSwap(false, true) {
		t.schedule()
	}
}

// closeIdle closes every pooled connection and stops pooling: the backend
// is retiring. Connections still in use are closed when they come back.
func (t *fastTransport) closeIdle() {
	t.retired.Store(true)
	t.fallback.CloseIdleConnections()
	t.mu.Lock()
	if t.timer != nil {
		t.timer.Stop()
	}
	t.mu.Unlock()
	for {
		select {
		case pc := <-t.idle:
			_ = pc.conn.Close() // retiring
		default:
			return
		}
	}
}

// exchange writes a request head (kind says how) and reads the response head on
// pc, into the header map into when it is empty (see h1.ReadResponse; nil:
// a map of the answer's own). The body is streamed from the connection by
// whoever reads resp.Body;
// the connection goes back to the pool once that body was read to its end,
// unless closing (the head asked the app to close) or the app said so.
func (t *fastTransport) exchange(pc *pconn, req *http.Request, kind headKind, closing bool, into http.Header) (*http.Response, error) {
	ctx := req.Context()
	// Unblock the reads and writes below if the client goes away.
	conn := pc.conn
	watch := watchClient(ctx, pc)
	// The answer's wait is bounded from before the head is sent:
	// sendAndWait waits for the answer under this deadline.
	if t.headTimeout > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(t.headTimeout))
		if watch.aborted() {
			_ = conn.SetDeadline(aLongTimeAgo) // the client left before: keep its deadline
		}
	}
	err := pc.sendAndWait(req, kind)
	var resp *http.Response
	unsent := err != nil // the head did not reach the app whole: it cannot have acted on it
	answered := false
	if err == nil {
		// The first byte apart, so a failure can tell "no answer at all"
		// (the crash hold may send a repeatable request again) from a
		// broken answer; the read is the one ReadResponse would make.
		if _, err = pc.br.Peek(1); err == nil {
			answered = true
			resp, err = readFinalResponse(pc.br, req, into)
		}
		if t.headTimeout > 0 && err == nil {
			_ = conn.SetReadDeadline(time.Time{}) // the body is not bounded
			if watch.aborted() {
				// The client left while the deadline was replaced: the
				// abort's deadline may have been cleared with it.
				_ = conn.SetDeadline(aLongTimeAgo)
			}
		}
	}
	if err != nil {
		aborted := !watch.end()
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case aborted:
			err = context.Canceled // the client left; net/http cancels ctx right after
		case t.headTimeout > 0 && errors.As(err, &ne) && ne.Timeout():
			err = errHeadTimeout(t.headTimeout) // the read deadline above
		case errors.As(err, &ne) && ne.Timeout():
		case unsent:
			err = &unservedError{err: err, unsent: true}
		case !answered:
			err = &unservedError{err: err}
		}
		return nil, err
	}
	keep := !resp.Close && !closing && resp.StatusCode != http.StatusSwitchingProtocols
	resp.Body = &pooledBody{rc: resp.Body, pc: pc, t: t, keep: keep, watch: watch}
	return resp, nil
}

// clientWatch aborts an exchange with the app (a deadline in the past on
// its connection) when the client goes away meanwhile. A client
// connection tracked by ClientConns watches itself (clientConn.watch): no
// allocation and no lock per request. Any other request falls back to
// context.AfterFunc on its context, which allocates five objects and
// takes the parent context's lock twice.
type clientWatch struct {
	client *clientConn // the connection watching, or nil
	pc     *pconn      // what client watches for this request
	ctx    context.Context
	stop   func() bool // context.AfterFunc's, when client is nil
}

func watchClient(ctx context.Context, pc *pconn) clientWatch {
	if c, ok := ctx.Value(clientConnKey{}).(*clientConn); ok {
		c.watch(pc)
		return clientWatch{client: c, pc: pc}
	}
	conn := pc.conn
	return clientWatch{ctx: ctx, stop: context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })}
}

// aborted reports whether the client went away and the abort took (or
// is taking) the connection.
func (w clientWatch) aborted() bool {
	if w.client != nil {
		return w.client.upstream.Load() != w.pc
	}
	return w.ctx.Err() != nil
}

// end stops watching; false means the abort came first and its deadline
// is (or is about to be) set: the connection must not be reused.
func (w clientWatch) end() bool {
	if w.client != nil {
		return w.client.upstream.CompareAndSwap(w.pc, nil)
	}
	return w.stop()
}

// errHeadTimeout is a request that got no response head within
// headTimeout: a net.Error that times out, so the client gets 504.
type errHeadTimeout time.Duration

func (e errHeadTimeout) Error() string {
	return fmt.Sprintf("no response head from the app within %s (proxy.upstreamTimeoutMs)", time.Duration(e))
}
func (errHeadTimeout) Timeout() bool   { return true }
func (errHeadTimeout) Temporary() bool { return false }

// roundTripBody sends a request with a body through the fallback
// transport. If the app's port refused the connection, no byte of the
// body was read, and the crash hold may send it again (crashhold.go).
func (t *fastTransport) roundTripBody(req *http.Request) (*http.Response, error) {
	since := t.epoch()
	fb := &fallbackBody{t: t}
	resp, err := t.roundTripFallback(req, fb)
	if err != nil && since != nil && !fb.out.read.Load() {
		return t.proxy.recoverUnserved(t.backend, req, since, err, false, func(nb *Backend, pc *pconn) (*http.Response, error) {
			if pc != nil {
				_ = pc.conn.Close() // never opened for a refused connection; the fallback dials its own
			}
			// The same request to nb's address: the header policy made it
			// for any backend, and the dial is what the host names.
			again := req.WithContext(req.Context())
			u := *req.URL
			u.Host = nb.addr
			again.URL = &u
			nt := nb.fast.Load()
			return nt.roundTripFallback(again, &fallbackBody{t: nt})
		})
	}
	return resp, err
}

// roundTripFallback sends a request with a body through the fallback
// transport, bounding the wait for its head by headTimeout. The timer
// ends a context of the request's own; the body, once the head came, is
// read under that context until it is closed. fb becomes the answer's
// body; its out stands for the request's body meanwhile.
func (t *fastTransport) roundTripFallback(req *http.Request, fb *fallbackBody) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	var timer *time.Timer
	var fired atomic.Bool
	if t.headTimeout > 0 {
		timer = time.AfterFunc(t.headTimeout, func() { fired.Store(true); cancel() })
	}
	out := req.WithContext(ctx)
	fb.out.rc = req.Body
	out.Body = &fb.out
	resp, err := t.fallback.RoundTrip(out)
	if timer != nil {
		timer.Stop()
	}
	if err != nil {
		cancel()
		if fired.Load() && req.Context().Err() == nil {
			err = errHeadTimeout(t.headTimeout)
		}
		return nil, err
	}
	fb.ReadCloser, fb.cancel = resp.Body, cancel
	resp.Body = fb
	return resp, nil
}

// fallbackBody is the body of an answer the fallback transport fetched.
// Closing it ends the request's context, and on a retired backend closes
// the fallback's idle connections: the one this answer came on is back in
// the pool by then. The pool is shared, so the other backends' idle
// connections go too; they are dialled again on their next body request,
// which only a retiring release pays for.
//
// It is allocated before the request is sent, so that out (the request
// body as the fallback transport sees it) costs no allocation of its own.
type fallbackBody struct {
	io.ReadCloser
	t      *fastTransport
	cancel context.CancelFunc
	out    outBody
}

// outBody is a request body as the fallback transport reads it. It tells
// whether any of it was read, and keeps the transport's Close (which it
// does on every failure) from reaching the request's own body, so that a
// body not read yet can still be sent once more. ReverseProxy closes the
// request's body itself when its handler ends.
type outBody struct {
	rc   io.ReadCloser
	read atomic.Bool // the transport's writer goroutine may still read
}

func (b *outBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

func (b *outBody) Close() error { return nil }

func (b *fallbackBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	if b.t.retired.Load() {
		b.t.fallback.CloseIdleConnections()
	}
	return err
}

// pooledBody returns its connection to the pool when read to EOF and
// closed; a body abandoned early closes the connection instead (the rest
// of it would have to be read first).
type pooledBody struct {
	rc    io.ReadCloser
	pc    *pconn
	t     *fastTransport
	keep  bool
	eof   bool
	done  bool
	watch clientWatch
}

func (b *pooledBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

func (b *pooledBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.rc.Close()
	stopped := b.watch.end() // false: the client went away and the deadline was set
	if b.keep && b.eof && stopped && err == nil {
		b.t.put(b.pc)
		return nil
	}
	_ = b.pc.conn.Close() // not reusable
	return err
}
