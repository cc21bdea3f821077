package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// This file is the WebSocket echo of /ws: RFC 6455, unfragmented messages
// only, on the standard library alone.

// WebSocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close status codes we send.
const (
	closeNormal        = 1000
	closeGoingAway     = 1001
	closeProtocolError = 1002
	closeUnsupported   = 1003
	closeInvalidData   = 1007
	closeTooBig        = 1009
)

// wsConn is one upgraded connection. Writes are serialised so the echo loop
// and a shutdown can both send frames.
type wsConn struct {
	conn net.Conn
	r    *bufio.Reader

	wmu    sync.Mutex
	closed bool // a close frame was sent
}

// acceptKey is the Sec-WebSocket-Accept value for a client key.
func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// headerHasToken reports whether a comma-separated header contains token.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

func (a *app) websocket(w http.ResponseWriter, r *http.Request) {
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "this endpoint speaks WebSocket only", http.StatusUpgradeRequired)
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "unsupported WebSocket version", http.StatusUpgradeRequired)
		return
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		http.Error(w, "bad Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot upgrade this connection", http.StatusInternalServerError)
		return
	}
	// A hijacked conn may carry the server's deadlines; a WebSocket may idle.
	conn.SetDeadline(time.Time{})
	resp := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(key) + "\r\n\r\n"
	if _, err := conn.Write([]byte(resp)); err != nil {
		conn.Close()
		return
	}
	c := &wsConn{conn: conn, r: brw.Reader}
	if !a.track(c) {
		c.sendClose(closeGoingAway, "server shutting down")
		c.finish()
		return
	}
	defer a.untrack(c)
	c.echo()
}

// track registers c for closeWebSockets; false once the app is shutting down.
func (a *app) track(c *wsConn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sockets == nil {
		return false
	}
	a.sockets[c] = struct{}{}
	a.wg.Add(1)
	return true
}

func (a *app) untrack(c *wsConn) {
	a.mu.Lock()
	delete(a.sockets, c)
	a.mu.Unlock()
	a.wg.Done()
}

// closeWebSockets sends every open WebSocket a "going away" close, gives
// the clients a moment to answer, and refuses new sockets.
func (a *app) closeWebSockets() {
	a.mu.Lock()
	open := a.sockets
	a.sockets = nil
	a.mu.Unlock()
	for c := range open {
		c.sendClose(closeGoingAway, "server shutting down")
		// The echo loop ends when the client's close arrives or this passes.
		c.conn.SetReadDeadline(time.Now().Add(wsCloseTimeout))
	}
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * wsCloseTimeout):
	}
}

// echo reads client frames until the connection ends.
func (c *wsConn) echo() {
	defer c.finish()
	for {
		fin, op, payload, code, err := c.readFrame()
		if err != nil {
			if code != 0 {
				c.sendClose(code, err.Error())
			}
			return
		}
		switch op {
		case opText, opBinary:
			if !fin {
				c.sendClose(closeUnsupported, "fragmented messages are not supported")
				return
			}
			if op == opText && !utf8.Valid(payload) {
				c.sendClose(closeInvalidData, "text message is not valid UTF-8")
				return
			}
			if c.writeFrame(op, payload) != nil {
				return // we sent a close (shutdown) or the peer is gone
			}
		case opContinuation:
			c.sendClose(closeUnsupported, "fragmented messages are not supported")
			return
		case opPing:
			if c.writeFrame(opPong, payload) != nil {
				return
			}
		case opPong:
			// unsolicited pongs are allowed; nothing to do
		case opClose:
			c.answerClose(payload)
			return
		default:
			c.sendClose(closeProtocolError, fmt.Sprintf("unknown opcode %#x", op))
			return
		}
	}
}

// finish ends the TCP connection the polite way: our FIN first (the server
// closes first, RFC 6455 section 7.1.1), then whatever the client still sends
// is read and dropped for a moment, so closing with unread input does not
// turn into a reset that could destroy the close frame in flight.
func (c *wsConn) finish() {
	if tc, ok := c.conn.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
		c.conn.SetReadDeadline(time.Now().Add(wsCloseTimeout))
		io.Copy(io.Discard, c.r)
	}
	c.conn.Close()
}

// readFrame reads one client frame and unmasks it. On a protocol violation
// it returns the close code to send with the error.
func (c *wsConn) readFrame() (fin bool, op byte, payload []byte, code int, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return false, 0, nil, 0, err
	}
	fin = hdr[0]&0x80 != 0
	op = hdr[0] & 0x0F
	if hdr[0]&0x70 != 0 {
		return fin, op, nil, closeProtocolError, errors.New("reserved bits set")
	}
	if hdr[1]&0x80 == 0 {
		return fin, op, nil, closeProtocolError, errors.New("client frames must be masked")
	}
	length := uint64(hdr[1] & 0x7F)
	switch length {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(c.r, ext[:]); err != nil {
			return fin, op, nil, 0, err
		}
		length = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(c.r, ext[:]); err != nil {
			return fin, op, nil, 0, err
		}
		length = binary.BigEndian.Uint64(ext[:])
		if length>>63 != 0 {
			return fin, op, nil, closeProtocolError, errors.New("payload length has its top bit set")
		}
	}
	if op >= opClose && (!fin || length > 125) {
		return fin, op, nil, closeProtocolError, errors.New("control frames must be final and at most 125 bytes")
	}
	if length > maxWSPayload {
		return fin, op, nil, closeTooBig, fmt.Errorf("frame larger than %d bytes", maxWSPayload)
	}
	var mask [4]byte
	if _, err := io.ReadFull(c.r, mask[:]); err != nil {
		return fin, op, nil, 0, err
	}
	payload = make([]byte, length)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		return fin, op, nil, 0, err
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	return fin, op, payload, 0, nil
}

// writeFrame sends one final, unmasked frame.
func (c *wsConn) writeFrame(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	return c.writeFrameLocked(op, payload)
}

func (c *wsConn) writeFrameLocked(op byte, payload []byte) error {
	hdr := make([]byte, 0, 10+len(payload))
	hdr = append(hdr, 0x80|op)
	switch n := len(payload); {
	case n <= 125:
		hdr = append(hdr, byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, 126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, 127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	_, err := c.conn.Write(append(hdr, payload...))
	return err
}

// sendClose sends a close frame unless one was sent already; later data
// frames are not sent.
func (c *wsConn) sendClose(code int, reason string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	var body []byte
	if code != 0 {
		if len(reason) > 123 { // control frames carry at most 125 bytes
			reason = reason[:123]
		}
		body = append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
	}
	c.conn.SetWriteDeadline(time.Now().Add(wsCloseTimeout))
	c.writeFrameLocked(opClose, body)
}

// answerClose replies to the client's close frame, echoing its status code.
func (c *wsConn) answerClose(payload []byte) {
	switch {
	case len(payload) == 0:
		c.sendClose(0, "") // no status in, no status out
	case len(payload) == 1:
		c.sendClose(closeProtocolError, "close payload of one byte")
	case !validCloseCode(int(binary.BigEndian.Uint16(payload))):
		c.sendClose(closeProtocolError, "invalid close code")
	case !utf8.Valid(payload[2:]):
		c.sendClose(closeInvalidData, "close reason is not valid UTF-8")
	default:
		c.sendClose(int(binary.BigEndian.Uint16(payload)), "")
	}
}

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 section 7.4; 1004-1006 and 1015 never go on the wire).
func validCloseCode(code int) bool {
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
}
