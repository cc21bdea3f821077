package control

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// Server serves the protocol on a listener. Create it with NewServer; Serve
// blocks until Close. Every request that fails — bad input included — is
// answered with an error line and the connection stays usable (except after
// an over-long line).
type Server struct {
	handler Handler
	failed  func(command string, err *Error)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool // value: a request is being handled
	done  bool
}

// NewServer returns a Server dispatching to h.
//
// failed, when not nil, is told about every failure the server produces
// itself: a request that does not decode (malformed, unknown command, a
// wrong field, an over-long line) and an answer that cannot be encoded.
// command is "" unless the request decoded. Errors the handler returns are
// not passed to failed: the handler records its own (see Handler), so each
// failure is recorded once. failed is called from connection goroutines,
// possibly concurrently.
func NewServer(h Handler, failed func(command string, err *Error)) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	if failed == nil {
		failed = func(string, *Error) {}
	}
	return &Server{handler: h, failed: failed, ctx: ctx, cancel: cancel, conns: map[net.Conn]bool{}}
}

// Serve accepts connections until the listener is closed by Close. It
// returns nil after Close, or the accept error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	var pause time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			done := s.done
			s.mu.Unlock()
			if done {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors (EMFILE) and the like pass: the control
			// socket must outlive them, or no deploy or shutdown gets through.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(pause):
			case <-s.ctx.Done():
				return nil
			}
			continue
		}
		pause = 0
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			_ = conn.Close() // arrived while closing
			continue
		}
		s.conns[conn] = false
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(conn)
	}
}

// StopAccepting closes the listener; requests in progress continue. The
// daemon calls it during shutdown before removing the socket file.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if s.ln != nil {
		_ = s.ln.Close() // the accept loop reports nothing after done
	}
}

// Close stops accepting, closes idle connections, waits up to grace for
// requests in progress to finish, then cancels their context and closes
// every connection. It returns when all connection goroutines are gone.
func (s *Server) Close(grace time.Duration) {
	s.StopAccepting()
	s.mu.Lock()
	for c, busy := range s.conns {
		if !busy {
			_ = c.Close() // idle: blocked reading the next request
		}
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(grace):
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		<-finished
	}
	s.cancel()
}

func (s *Server) setBusy(c net.Conn, busy bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done && !busy {
		return false // closing: do not read another request
	}
	s.conns[c] = busy
	return true
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close() // the peer may already be gone
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	w := &lineWriter{conn: c}
	for {
		line, err := readLine(r)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				s.fail(w, nil, err)
			}
			return
		}
		if !s.setBusy(c, true) {
			return
		}
		req, err := DecodeRequest(line)
		if err != nil {
			s.fail(w, nil, err)
		} else {
			s.handle(w, req)
		}
		if !s.setBusy(c, false) {
			return
		}
	}
}

func (s *Server) handle(w *lineWriter, req *Request) {
	progress := func(Progress) {} // one line per request, unless asked
	if req.Progress {
		progress = func(p Progress) {
			if b, err := encodeProgress(p); err == nil {
				w.write(b)
			}
		}
	}
	b, err := dispatch(s.ctx, s.handler, req, progress)
	if err == nil {
		w.write(b)
		return
	}
	var he *handlerError
	if errors.As(err, &he) {
		w.write(encodeError(asError(he.err)))
		return
	}
	s.fail(w, req, err)
}

// fail answers with err and reports it as a failure of the server's own.
func (s *Server) fail(w *lineWriter, req *Request, err error) {
	e := asError(err)
	command := ""
	if req != nil {
		command = req.Command
	}
	s.failed(command, e)
	w.write(encodeError(e))
}

// lineWriter writes whole lines and remembers a broken connection so a
// vanished client costs one failed write, not one per progress line.
type lineWriter struct {
	mu     sync.Mutex
	conn   net.Conn
	broken bool
}

func (w *lineWriter) write(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken {
		return
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second)) // a stuck reader must not hold a deploy
	if _, err := w.conn.Write(b); err != nil {
		w.broken = true
	}
}
