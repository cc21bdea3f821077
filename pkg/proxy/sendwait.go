package proxy

import (
	"bufio"
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

// sendStep is RawConn.Read's callback for sendAndWait: write the head on
// the first call, then wait; any later call means readable (or a spurious
// wake-up, which the caller's read then handles like any read).
func (pc *pconn) sendStep(uintptr) bool {
	req := pc.sending
	if req == nil {
		return true
	}
	pc.sending = nil
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

// sendAndWait writes req's head (kind says how) and flushes it, then waits
// until the app's answer can be read. A failure to write is returned (the
// app cannot have the whole head); a failed wait (deadline, Close) is
// not: the read that follows reports it. Without a RawConn it writes and
// returns at once. The request is kept in pc, not in a closure, so that
// the hop allocates nothing for it.
func (pc *pconn) sendAndWait(req *http.Request, kind headKind) error {
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
