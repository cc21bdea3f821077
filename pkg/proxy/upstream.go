package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
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
// A pooled connection idle for more than peekAfter is checked before reuse
// with a non-blocking peek: an app that closed it (keep-alive timeout) shows
// up as EOF and the connection is dropped without sending on it. Apps close
// idle connections after seconds, not microseconds, so under load — where
// connections come back within a millisecond — the peek is skipped. If a reused connection still
// fails before any byte of the response arrived, the request is sent once
// more on a fresh connection; that is safe because only requests without a
// body take this path, and only for methods that may be repeated.
type fastTransport struct {
	addr     string
	dialer   *net.Dialer
	fallback http.RoundTripper
	idle     chan *pconn // the pool; a channel, so the request path needs no mutex
	idleTTL  time.Duration
	buffers  *bufferPool
}

// peekAfter is how long a connection may sit idle before it is peeked at.
const peekAfter = 100 * time.Millisecond

// pconn is one keep-alive connection to the upstream.
type pconn struct {
	conn      net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

func newFastTransport(addr string, dialer *net.Dialer, fallback http.RoundTripper, maxIdle int, idleTTL time.Duration, buffers *bufferPool) *fastTransport {
	return &fastTransport{addr: addr, dialer: dialer, fallback: fallback, idle: make(chan *pconn, maxIdle), idleTTL: idleTTL, buffers: buffers}
}

// RoundTrip implements http.RoundTripper for what ReverseProxy still
// sends (requests forward does not take); bodies go to the fallback.
func (t *fastTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		return t.fallback.RoundTrip(req)
	}
	return t.send(req, req.Write, req.Close)
}

// send writes a request head with write on a pooled (or new) connection and
// reads the response head. A reused connection that fails before the answer
// began is retried once on a fresh one for repeatable methods: the app
// closed it between our peek and our write, so it never saw the request.
func (t *fastTransport) send(req *http.Request, write func(io.Writer) error, closing bool) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(req.Context())
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(pc, req, write, closing)
		if err == nil {
			return resp, nil
		}
		_ = pc.conn.Close() // broken: never pooled again
		if !reused || attempt > 0 || !repeatable(req) || req.Context().Err() != nil {
			return nil, err
		}
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
			idle := time.Since(pc.idleSince)
			if idle > t.idleTTL || (idle > peekAfter && !pc.alive()) || pc.br.Buffered() > 0 {
				_ = pc.conn.Close() // expired or closed by the app
				continue
			}
			return pc, true, nil
		default:
		}
		c, err := t.dialer.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			return nil, false, err
		}
		return &pconn{conn: c, br: bufio.NewReaderSize(c, 4<<10), bw: bufio.NewWriterSize(c, 4<<10)}, false, nil
	}
}

// alive peeks at an idle connection without blocking: nothing to read
// (EAGAIN) means it is still open; EOF, an error or unexpected bytes mean it
// must not be used.
func (pc *pconn) alive() bool {
	if pc.br.Buffered() > 0 {
		return false // the app sent something unasked for
	}
	sc, ok := pc.conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	ok = false
	err = rc.Read(func(fd uintptr) bool {
		n, _, e := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 && (e == syscall.EAGAIN || e == syscall.EWOULDBLOCK)
		return true // never wait for readiness: this is a probe
	})
	return err == nil && ok
}

// put returns a connection to the pool, or closes it when the pool is full.
func (t *fastTransport) put(pc *pconn) {
	pc.idleSince = time.Now()
	select {
	case t.idle <- pc:
	default:
		_ = pc.conn.Close() // pool full
	}
}

// closeIdle closes every pooled connection (the backend is retiring).
func (t *fastTransport) closeIdle() {
	for {
		select {
		case pc := <-t.idle:
			_ = pc.conn.Close() // retiring
		default:
			return
		}
	}
}

// exchange writes a request head (write) and reads the response head on
// pc. The body is streamed from the connection by whoever reads resp.Body;
// the connection goes back to the pool once that body was read to its end,
// unless closing (the head asked the app to close) or the app said so.
func (t *fastTransport) exchange(pc *pconn, req *http.Request, write func(io.Writer) error, closing bool) (*http.Response, error) {
	ctx := req.Context()
	// Unblock the reads and writes below if the client goes away.
	conn := pc.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	err := write(pc.bw)
	if err == nil {
		err = pc.bw.Flush()
	}
	var resp *http.Response
	if err == nil {
		resp, err = readFinalResponse(pc.br, req)
	}
	if err != nil {
		stop()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, err
	}
	keep := !resp.Close && !closing && resp.StatusCode != http.StatusSwitchingProtocols
	resp.Body = &pooledBody{rc: resp.Body, pc: pc, t: t, keep: keep, stop: stop}
	return resp, nil
}

// pooledBody returns its connection to the pool when read to EOF and
// closed; a body abandoned early closes the connection instead (the rest
// of it would have to be read first).
type pooledBody struct {
	rc   io.ReadCloser
	pc   *pconn
	t    *fastTransport
	keep bool
	eof  bool
	done bool
	stop func() bool
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
	stopped := b.stop() // false: the client went away and the deadline was set
	if b.keep && b.eof && stopped && err == nil {
		b.t.put(b.pc)
		return nil
	}
	_ = b.pc.conn.Close() // not reusable
	return err
}
