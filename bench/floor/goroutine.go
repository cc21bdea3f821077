package floor

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
)

// Goroutine forwards every connection ln accepts to upstream, one
// goroutine per connection, until ln is closed.
func Goroutine(ln net.Listener, upstream string) error {
	return serve(ln, upstream, false)
}

// Wait is Goroutine with every write to the app made inside RawConn.Read,
// after the poller's readiness reset, followed by a park until the app's
// answer (pkg/proxy's send-and-wait). Only the app side can skip the read
// before the park: the app sends nothing unasked, while a client may have
// pipelined its next request before the answer was written, and bytes
// that arrived before the reset would never wake the park.
func Wait(ln net.Listener, upstream string) error {
	return serve(ln, upstream, true)
}

func serve(ln net.Listener, upstream string, wait bool) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go forward(c, upstream, wait)
	}
}

// forward relays one client connection's requests and their answers.
func forward(c net.Conn, upstream string, wait bool) {
	defer c.Close()
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer up.Close()
	client, app := newSide(c, false), newSide(up, wait)
	for {
		req, err := client.message(false)
		if err != nil || !requestOK(req) {
			return
		}
		if err := app.send(req); err != nil {
			return
		}
		ans, err := app.message(true)
		if err != nil {
			return
		}
		if err := client.send(ans); err != nil {
			return
		}
	}
}

// side is one connection of the hop. With wait, send only records the
// bytes; the next read writes them first (see waitReader).
type side struct {
	c    net.Conn
	w    *waitReader // nil without wait
	br   *bufio.Reader
	head []byte // reused
}

func newSide(c net.Conn, wait bool) *side {
	s := &side{c: c}
	var r io.Reader = c
	if wait {
		if rc, err := c.(syscall.Conn).SyscallConn(); err == nil {
			s.w = &waitReader{c: c, rc: rc}
			s.w.fn = s.w.step
			r = s.w
		}
	}
	s.br = bufio.NewReaderSize(r, 4096)
	return s
}

var errFrame = errors.New("floor: cannot frame this message")

// message reads one head (and with body, the answer's Content-Length
// bytes). The slice is valid until the next call.
func (s *side) message(body bool) ([]byte, error) {
	s.head = s.head[:0]
	for {
		line, err := s.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		s.head = append(s.head, line...)
		if len(s.head) > maxHead {
			return nil, errFrame
		}
		if len(line) == 2 && line[0] == '\r' {
			break
		}
	}
	if !body {
		return s.head, nil
	}
	n := answerLen(s.head)
	if n < 0 {
		return nil, errFrame
	}
	h := len(s.head)
	s.head = append(s.head, make([]byte, n-h)...)
	_, err := io.ReadFull(s.br, s.head[h:])
	return s.head, err
}

func (s *side) send(b []byte) error {
	if s.w == nil {
		_, err := s.c.Write(b)
		return err
	}
	if s.br.Buffered() > 0 {
		return errFrame // the app sent bytes nobody asked for
	}
	s.w.pending = append(s.w.pending[:0], b...)
	return nil
}

// waitReader writes pending, then waits for and reads the peer's bytes,
// all in one RawConn.Read: the poller's readiness is reset before the
// first callback, so a write made inside it cannot have its answer's
// wake-up forgotten.
type waitReader struct {
	c       net.Conn
	rc      syscall.RawConn
	fn      func(fd uintptr) bool
	pending []byte // to write before waiting, from off on
	off     int
	buf     []byte
	wrote   bool
	n       int
	err     error
}

func (w *waitReader) Read(p []byte) (int, error) {
	w.buf, w.wrote, w.n, w.err = p, len(w.pending) == 0, 0, nil
	if err := w.rc.Read(w.fn); err != nil {
		return 0, err
	}
	if !w.wrote && w.err == nil {
		// The socket buffer was full: let net.Conn wait for room, then
		// wait for the answer as before.
		if _, err := w.c.Write(w.pending[w.off:]); err != nil {
			return 0, err
		}
		w.pending, w.off, w.wrote = w.pending[:0], 0, true
		if err := w.rc.Read(w.fn); err != nil {
			return 0, err
		}
	}
	if w.n == 0 && w.err == nil {
		return 0, io.EOF
	}
	return w.n, w.err
}

func (w *waitReader) step(fd uintptr) bool {
	if !w.wrote {
		for w.off < len(w.pending) {
			n, err := syscall.Write(int(fd), w.pending[w.off:])
			if err == syscall.EAGAIN {
				return true // Read finishes the write through net.Conn
			}
			if err != nil {
				w.err = err
				return true
			}
			w.off += n
		}
		w.pending, w.off, w.wrote = w.pending[:0], 0, true
		return false // park until the peer's bytes arrive
	}
	n, err := syscall.Read(int(fd), w.buf)
	switch {
	case err == syscall.EAGAIN:
		return false
	case err != nil:
		w.err = err
	default:
		w.n = n
	}
	return true
}
