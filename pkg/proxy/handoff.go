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

// handoffListener yields the connections the loop gives up.
type handoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn, 1024), closed: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; connections given and not accepted are closed.
func (l *handoffListener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		for {
			select {
			case c := <-l.conns:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give queues c for Accept without waiting; false (c not taken) once
// closed or when the queue is full.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case <-l.closed:
		return false
	default:
	}
	select {
	case l.conns <- c:
		return true
	default:
		return false
	}
}

// handedConn is a client connection the loop gave up: Read returns held,
// the bytes the loop read, before anything more from the socket.
type handedConn struct {
	*net.TCPConn
	held    []byte
	pending atomic.Pointer[pendingAnswer]
}

func (c *handedConn) Read(p []byte) (int, error) {
	if len(c.held) > 0 {
		n := copy(p, c.held)
		c.held = c.held[n:]
		return n, nil
	}
	return c.TCPConn.Read(p)
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
