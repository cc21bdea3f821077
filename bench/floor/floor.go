// Package floor is a measuring instrument, not a proxy: minimal forwarders
// of body-less HTTP/1.1 keep-alive requests, each built the way a Go proxy
// could be built, so the suite can show what each design costs per hop on
// this host with little or no HTTP work (issue #17: how far below nginx's
// CPU per request can a Go request path go, and which design gets there).
//
//   - Goroutine: one goroutine per client connection, reading and writing
//     through net.Conn, the model of net/http's server (and of rollbridged).
//   - Wait: the same, but each write to the app happens inside
//     RawConn.Read's callback and the goroutine then parks until the answer,
//     so the read after that write does not first return EAGAIN (pkg/proxy's
//     send-and-wait; the client side cannot do it, see Wait).
//   - Loop: one OS thread, one epoll instance, non-blocking raw system
//     calls and no goroutine per connection: the model of nginx's worker.
//     With ParseHeads (the suite's loop-h1) every head is parsed by
//     internal/h1 and written anew, the least HTTP work a request path
//     does; with ScanHeads (loop-scan) the same work is done in place,
//     allocating nothing per request.
//
// All of them use one upstream connection per client connection, opened
// when the client connects, pass a request head on (as is, or rewritten)
// and frame an answer as its head plus Content-Length bytes. They handle
// nothing else: a request with a body (and, where heads are passed on as
// is, HEAD), an answer without a Content-Length or without a body (1xx,
// 204, 304), a head over 64 KiB or any error closes both connections.
// Never put one in front of anything but the benchmark's app.
package floor

import (
	"bytes"
	"strconv"
)

// maxHead bounds a request or answer head; a longer one closes the pair.
const maxHead = 64 << 10

// headEnd is the index just past the blank line ending the head at the
// start of b, or -1 while the head is incomplete.
func headEnd(b []byte) int {
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		return -1
	}
	return i + 4
}

// field is the value of the first field named name (ASCII, any case) in
// head, and whether there is one.
func field(head []byte, name string) ([]byte, bool) {
	for len(head) > 0 {
		i := bytes.Index(head, []byte("\r\n"))
		if i < 0 {
			i = len(head)
		}
		line := head[:i]
		if len(line) > len(name) && line[len(name)] == ':' && bytes.EqualFold(line[:len(name)], []byte(name)) {
			return bytes.TrimSpace(line[len(name)+1:]), true
		}
		head = head[min(i+2, len(head)):]
	}
	return nil, false
}

// requestOK is whether the instrument forwards a request with this head
// as is: one without a body, and not HEAD (whose answer's Content-Length
// describes a body that does not come).
func requestOK(head []byte) bool {
	if bytes.HasPrefix(head, []byte("HEAD ")) {
		return false
	}
	if _, ok := field(head, "Content-Length"); ok {
		return false
	}
	_, ok := field(head, "Transfer-Encoding")
	return !ok
}

// answerLen is the length of the answer whose head is head (head plus
// Content-Length), or -1 when the instrument cannot frame it: no
// Content-Length, or a status (1xx, 204, 304) whose answer has no body
// whatever its fields say.
func answerLen(head []byte) int {
	if len(head) < 12 || head[9] == '1' || bytes.HasPrefix(head[9:], []byte("204")) || bytes.HasPrefix(head[9:], []byte("304")) {
		return -1
	}
	v, ok := field(head, "Content-Length")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 0 || n > 1<<30 {
		return -1
	}
	return len(head) + n
}
