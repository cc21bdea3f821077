package proxy

import (
	"bufio"
	"errors"
	"net/http"
	"syscall"
)

// Sending a request head and waiting for the answer without the read
// that finds nothing.
//
// Go's reads are speculative: net.Conn.Read first makes the read system
// call and, when it fails with EAGAIN, parks the goroutine until the
// poller reports the socket readable, then reads again. Right after a
// request is written the app has not answered yet (it runs on another
// CPU), so that first read nearly always finds nothing: one wasted system
// call per proxied request, about a tenth of the hop's calls
// (docs/performance.md).
//
// RawConn.Read can wait for readability without reading, but it first
// forgets any readiness the poller recorded earlier, so waiting without
// reading is safe only when the awaited bytes cannot have arrived before
// the call. They cannot when the request itself is written inside it:
// sendAndWait writes the head from RawConn.Read's callback, whose first
// run comes after the reset, and returns false so that the goroutine
// parks until the answer's first bytes arrive (or a deadline or Close
// ends the wait); the caller's next read then finds them.

// headKind says how a request's head is written to the app.
type headKind uint8

const (
	// headForward: the incoming request, through writeHead (the header
	// policy), as forward sends it.
	headForward headKind = iota
	// headWhole: an outgoing request ReverseProxy already rewrote, with
	// Request.Write.
	headWhole
)

func writeRequestHead(w *bufio.Writer, req *http.Request, kind headKind) error {
	if kind == headWhole {
		return req.Write(w)
	}
	return writeHead(w, req, "")
}

// sendStep is RawConn.Read's callback for sendAndWait: check the
// connection, write the head on the first call, then wait; any later call
// means readable (or a spurious wake-up, which the caller's read then
// handles like any read).
//
// The check is the pool's peek (idleState), made here rather than before
// the call because RawConn.Read forgets readiness recorded before it: an
// app's FIN that came earlier would never wake the wait (an app that
// half-closes and keeps reading, as Apache's lingering close does, sends
// nothing more), so the request would wait for its head timeout instead
// of being sent again on another connection. Whatever arrives after this
// peek wakes the wait.
func (pc *pconn) sendStep(uintptr) bool {
	req := pc.sending
	if req == nil {
		return true
	}
	pc.sending = nil
	if pc.stale = pc.idleState(); pc.stale != idleQuiet {
		return true // nothing written: sendAndWait says errStale
	}
	err := writeRequestHead(pc.bw, req, pc.kind)
	if err == nil {
		err = pc.bw.Flush()
	}
	if err != nil {
		pc.sendErr = err
		return true // nothing to wait for
	}
	return false
}

// errStale is sendAndWait's error when the connection was closed by the
// app, or holds bytes nobody asked for, before anything was written
// (pc.stale says which): the request may go on another connection.
var errStale = errors.New("the app connection was closed or held unsolicited bytes")

// sendAndWait checks the connection, writes req's head (kind says how)
// and flushes it, then waits until the app's answer can be read. A
// connection found stale, or a failure to write, is returned (the app
// cannot have the whole head); a failed wait (deadline, Close) is not: the
// read that follows reports it. Without a RawConn (never for TCP) it
// writes and returns at once. The request is kept in pc, not in a
// closure, so that the hop allocates nothing for it.
func (pc *pconn) sendAndWait(req *http.Request, kind headKind) error {
	pc.stale = idleQuiet
	if pc.rc == nil {
		if err := writeRequestHead(pc.bw, req, kind); err != nil {
			return err
		}
		return pc.bw.Flush()
	}
	pc.sending, pc.kind, pc.sendErr = req, kind, nil
	err := pc.rc.Read(pc.step)
	if pc.sending != nil {
		// The callback never ran (a closed connection, or a deadline
		// already past: the client left): nothing was written.
		pc.sending = nil
		return err
	}
	if pc.stale != idleQuiet {
		return errStale
	}
	return pc.sendErr
}

// rawConn returns c's RawConn, or nil.
func rawConn(c any) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
