package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
)

// serveUpgrade forwards a protocol switch (WebSocket) to b for the whole
// life of the connection, which is what pins it to b.
//
// ReverseProxy does the handshake and the copying, and closes the backend
// side when the request context ends. Running it under a context that
// CloseConnections cancels therefore lets a force-close end the backend
// side; the copy from the backend then fails and ReverseProxy closes the
// client side too.
func (b *Backend) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	if b.kill.Err() != nil {
		http.Error(w, statusBody(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(b.kill, cancel)
	defer stop()
	uw := &upgradeWriter{ResponseWriter: w}
	b.rp.ServeHTTP(uw, r.WithContext(context.WithValue(ctx, upgradeKey{}, uw)))
	if uw.backend != nil {
		// ReverseProxy closes the client side before it returns but leaves
		// the backend side to a goroutine of its own, and does not close it
		// at all when it rejects the app's 101 (wrong protocol). Close it
		// here, so the connection is gone on both sides before the caller
		// stops counting it.
		_ = uw.backend.Close() // usually closed already; the error says only that
	}
}

// upgradeKey is the request context key under which ModifyResponse finds
// the upgrade's upgradeWriter.
type upgradeKey struct{}

// keepBackend is ReverseProxy's ModifyResponse. For a 101 it records the
// upgraded backend connection (the response body) with the request's
// upgradeWriter, so serveUpgrade can close it. It runs on the request's
// goroutine; for any other response it only compares the status.
func keepBackend(res *http.Response) error {
	if res.StatusCode != http.StatusSwitchingProtocols {
		return nil
	}
	uw, ok := res.Request.Context().Value(upgradeKey{}).(*upgradeWriter)
	if !ok {
		// ReverseProxy would refuse this too, but leave the connection
		// open; returning an error makes it close the body (502).
		return errors.New("app switched protocols on a request that asked for no upgrade")
	}
	uw.backend = res.Body
	return nil
}

// upgradeWriter hands ReverseProxy a client connection that cannot be
// half-closed.
//
// When the backend ends its side, ReverseProxy only half-closes the client
// (CloseWrite) and keeps copying until the client closes too. A client that
// never does (one that stopped reading, or sits behind a front end that
// keeps the socket open) then holds the connection, its count, and so the
// drain of an old release, forever: the Node original's half-closed-socket
// leak. Without CloseWrite, ReverseProxy closes both sides as soon as
// either one ends. WebSocket has its own closing handshake, so nothing is
// lost by not half-closing TCP.
type upgradeWriter struct {
	http.ResponseWriter
	hijacked bool      // the 101 is being written: the error handler must not write a status
	backend  io.Closer // the upgraded backend connection, once the app answered 101
}

// Unwrap lets http.ResponseController reach Flush on the real writer when
// the app refuses the upgrade with a streamed response.
func (w *upgradeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err // ReverseProxy tests it with errors.Is(err, http.ErrNotSupported)
	}
	w.hijacked = true
	return &fullCloseConn{Conn: conn, br: brw.Reader}, brw, nil
}

// fullCloseConn is a hijacked client connection without CloseWrite (see
// upgradeWriter). It also reads through the server's buffered reader first:
// ReverseProxy copies from the raw connection, which would skip any bytes
// the client sent right behind its handshake that net/http had already
// buffered.
type fullCloseConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *fullCloseConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil // drained; only ReverseProxy's one copy goroutine reads
	}
	return c.Conn.Read(p)
}
