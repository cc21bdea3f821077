package control

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// Handler executes one decoded request. progress may be called any number of
// times before Handle returns; it never blocks on a slow or gone client. The
// result must marshal to a JSON object (its fields are sent next to
// "status":"success"), or be nil. ctx ends when the server closes, not when
// the client hangs up: a deploy continues if its caller disconnects.
type Handler interface {
	Handle(ctx context.Context, req *Request, progress func(Progress)) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request, progress func(Progress)) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, req *Request, progress func(Progress)) (any, error) {
	return f(ctx, req, progress)
}

// Server serves the protocol on a listener. Create it with NewServer; Serve
// blocks until Close. Every request that fails — bad input included — is
// answered with an error line and recorded as a "command failed" event.
type Server struct {
	handler Handler
	events  events.Sink

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool // value: a request is being handled
	done  bool
}

// NewServer returns a Server dispatching to h and reporting failures to sink.
func NewServer(h Handler, sink events.Sink) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	if sink == nil {
		sink = events.Discard
	}
	return &Server{handler: h, events: sink, ctx: ctx, cancel: cancel, conns: map[net.Conn]bool{}}
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
	progress := func(p Progress) {
		b, err := encodeJSONLine(progressLine{Status: "progress", Message: p.Message, Data: p.Data})
		if err == nil {
			w.write(b)
		}
	}
	result, err := s.handler.Handle(s.ctx, req, progress)
	if err != nil {
		s.fail(w, req, err)
		return
	}
	b, err := encodeSuccess(result)
	if err != nil {
		s.fail(w, req, err)
		return
	}
	w.write(b)
}

func (s *Server) fail(w *lineWriter, req *Request, err error) {
	e := asError(err)
	data := map[string]any{"error": e.Message, "code": e.Code}
	if req != nil {
		data["command"] = req.Command
	}
	s.events.Emit("command failed", data)
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
