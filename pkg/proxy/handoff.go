package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The event loop's hand-off to the net/http path (issue #17; see loop.go).
//
// The loop serves only the plain case and gives every other connection to
// the net/http server with what it has read of it: a handedConn, yielded
// by the handoffListener the server is served on (through ClientConns, as
// any connection). net/http reads the held bytes first, so the request the
// loop gave up is read again from the start, by the full parser.
//
// When the loop has already sent a request and the app's answer is one it
// does not frame (chunked, no length, too large, 1xx), the connection goes
// with that answer pending: the first request net/http reads on it is
// answered from the app connection the loop used, with the answer bytes
// the loop read in front of it (servePending), and is not sent again.

// handoffListener yields the connections the loop gives up. Its queue
// has no bound: the loop never waits on net/http, and never drops a
// connection holding a request because net/http is slow to accept.
type handoffListener struct {
	// unread counts the connections given whose first Read has not come
	// yet: until it does, net/http may not have registered one with
	// ClientConns, whose Stop would then not wait for its request.
	unread atomic.Int64
	addr   net.Addr
	mu     sync.Mutex
	queue  []*handedConn
	ready  chan struct{} // a token while queue may be non-empty
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ready: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			if len(l.queue) > 0 {
				l.signal()
			}
			l.mu.Unlock()
			return c, nil
		}
		l.mu.Unlock()
		select {
		case <-l.ready:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
}

func (l *handoffListener) signal() {
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// Close stops Accept; connections given and not accepted are closed, and
// an answer pending on one is released.
func (l *handoffListener) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		close(l.closed)
		queue := l.queue
		l.queue = nil
		l.mu.Unlock()
		for _, c := range queue {
			c.read()
			c.release()
			_ = c.Close()
		}
	})
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give queues c for Accept; false (c not taken) once closed.
func (l *handoffListener) give(c *handedConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
		return false
	default:
	}
	c.unread = &l.unread
	l.unread.Add(1)
	l.queue = append(l.queue, c)
	l.signal()
	return true
}

// handedConn is a client connection the loop gave up: Read returns held,
// the bytes the loop read, before anything more from the socket.
type handedConn struct {
	*net.TCPConn
	held    []byte
	pending atomic.Pointer[pendingAnswer]
	// bounces counts the loop's hand-offs of the connection in a row with
	// no request it served itself between them (clientConn.backTo).
	bounces uint8
	// unread is the listener's count, until the first Read (read).
	unread *atomic.Int64
	first  atomic.Bool
}

// read marks the connection's first Read (handoffListener.unread).
func (c *handedConn) read() {
	if c.unread != nil && !c.first.Load() && c.first.CompareAndSwap(false, true) {
		c.unread.Add(-1)
	}
}

func (c *handedConn) Read(p []byte) (int, error) {
	c.read()
	if len(c.held) > 0 {
		n := copy(p, c.held)
		c.held = c.held[n:]
		return n, nil
	}
	return c.TCPConn.Read(p)
}

// release ends an answer still pending on c, unused: its app connection
// closes and its count ends.
func (c *handedConn) release() {
	if pa := c.pending.Swap(nil); pa != nil {
		pa.release()
	}
}

func (pa *pendingAnswer) release() {
	if pa.conn != nil {
		_ = pa.conn.Close()
	}
	pa.backend.done(pa.n)
}

// holding reports bytes not yet read by net/http: such a connection is
// not at a request boundary that can be parked (clientConn.Read).
func (c *handedConn) holding() bool { return len(c.held) > 0 }

// pendingAnswer is an answer the loop was waiting for when it gave the
// connection up: its request was sent to the app on conn, whose first
// bytes read are in head (conn nil: the app closed after them), and
// counted on backend's counter n.
type pendingAnswer struct {
	backend *Backend
	n       *atomic.Int64
	conn    net.Conn
	head    []byte
	timeout time.Duration // what is left of the app's time to answer (0: no limit)
	// failed, when set, is why the app connection ended before any byte
	// of an answer (conn and head are empty): the net/http path treats
	// it as its own failed send, with the crash hold's rules. since is
	// the routing epoch when the loop sent the request, retried that
	// the loop sent it twice, unsent that no byte of it reached the app.
	failed          error
	since           *epoch
	retried, unsent bool
}

// takePending returns the pending answer of r's connection and clears it:
// only the first request read after a hand-off has one.
func takePending(r *http.Request) *pendingAnswer {
	c, ok := r.Context().Value(clientConnKey{}).(*clientConn)
	if !ok {
		return nil
	}
	h, ok := c.Conn.(*handedConn)
	if !ok {
		return nil
	}
	return h.pending.Swap(nil)
}

// servePending answers r, the request the loop sent, from pa.
func (p *Proxy) servePending(w http.ResponseWriter, r *http.Request, pa *pendingAnswer) {
	b := pa.backend
	defer b.done(pa.n)
	if b.obs != nil {
		b.observed(w, r, func(w http.ResponseWriter) { p.answerPending(w, r, pa) })
		return
	}
	p.answerPending(w, r, pa)
}

// answerPending is servePending's answer.
func (p *Proxy) answerPending(w http.ResponseWriter, r *http.Request, pa *pendingAnswer) {
	b := pa.backend
	if pa.failed != nil {
		// As send after sendPooled failed: the crash hold may wait for the
		// app and send the request once more, or the error is answered.
		h := w.Header()
		var err error = &unservedError{err: pa.failed, unsent: pa.unsent}
		var res *http.Response
		if pa.since != nil {
			res, err = p.recoverUnserved(b, r, pa.since, err, pa.retried, func(nb *Backend, pc *pconn) (*http.Response, error) {
				return nb.fast.Load().resend(pc, r, headForward, false, h)
			})
		}
		b.answer(w, r, h, res, err)
		return
	}
	var src io.Reader = bytes.NewReader(pa.head)
	if pa.conn != nil {
		src = io.MultiReader(src, pa.conn)
		if pa.timeout > 0 {
			_ = pa.conn.SetReadDeadline(time.Now().Add(pa.timeout))
		}
		// The client leaving ends the wait, as clientWatch does.
		stop := context.AfterFunc(r.Context(), func() { _ = pa.conn.SetDeadline(aLongTimeAgo) })
		defer stop()
	}
	br := bufio.NewReader(src)
	h := w.Header()
	res, err := readFinalResponse(br, r, h)
	if err != nil {
		if pa.conn != nil {
			_ = pa.conn.Close()
		}
		var ne net.Error
		switch {
		case r.Context().Err() != nil:
			err = r.Context().Err()
		case errors.As(err, &ne) && ne.Timeout() && pa.timeout > 0:
			err = errHeadTimeout(time.Duration(p.upstreamTimeout.Load()))
		}
		b.answer(w, r, h, nil, err)
		return
	}
	if pa.conn == nil {
		b.answer(w, r, h, res, nil) // the app closed: its answer is what the loop read
		return
	}
	_ = pa.conn.SetReadDeadline(time.Time{}) // the body is not bounded
	res.Body = &closingBody{ReadCloser: res.Body, conn: pa.conn}
	b.answer(w, r, h, res, nil)
}

// closingBody closes the app connection with the body: a hand-off's app
// connection is not pooled (it is rare, and its reader is not the pool's).
type closingBody struct {
	io.ReadCloser
	conn net.Conn
}

func (b *closingBody) Close() error {
	err := b.ReadCloser.Close()
	_ = b.conn.Close()
	return err
}
