// Command app is a small web app for Rollbridge demos, tests and benchmarks.
// It uses only the standard library so it builds anywhere Go does.
//
// Usage:
//
//	app [--port N] [--host 127.0.0.1]
//
// The port comes from --port, else $ROLLBRIDGE_PORT (what rollbridged
// injects), else $PORT. The release name comes from $ROLLBRIDGE_RELEASE_ID,
// else $APP_VERSION.
//
// Endpoints:
//
//	GET  /ping          health check: 200 "ok" (status from $APP_HEALTH_STATUS)
//	GET  /              "hello from release <id>"
//	GET  /version       {"release": "<id>", "pid": <pid>}
//	GET  /bytes?n=N     N bytes of body (0 <= N <= 64 MiB)
//	POST /upload        reads the body, answers its size in bytes
//	GET  /events        Server-Sent Events: "data: tick N" every 100ms, ?count= (default 5)
//	GET  /ws            WebSocket echo (text, binary, ping -> pong, close)
//
// Knobs for tests and demos:
//
//	APP_EXIT_CODE=N        exit at once with code N (a release that crashes)
//	APP_BOOT_DELAY_MS=N    wait N ms before listening (a slow boot)
//	APP_HEALTH_STATUS=N    status code /ping answers (503: an unhealthy release)
//	APP_ACCESS_LOG=1       log one stdout line per request
//
// SIGTERM or SIGINT stops accepting connections, waits up to 10s for
// in-flight requests, sends open WebSockets a "going away" close, and exits 0.
package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

const (
	maxBytesBody     = 64 << 20 // largest /bytes response
	maxEventCount    = 100000   // largest ?count= for /events
	eventInterval    = 100 * time.Millisecond
	shutdownTimeout  = 10 * time.Second
	maxWSPayload     = 16 << 20 // largest WebSocket frame we accept
	wsGUID           = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	wsCloseTimeout   = time.Second
	defaultRelease   = "dev"
	defaultEventsCnt = 5
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil))
}

// options is everything the app reads from its flags and environment.
type options struct {
	host         string
	port         int
	release      string
	bootDelay    time.Duration
	healthStatus int
	accessLog    bool
}

// run is main without the process-wide parts, so tests can drive it:
// cancelling ctx plays the role of SIGTERM, and ready (when not nil) is
// called with the listening address. It returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(addr string)) int {
	if s := getenv("APP_EXIT_CODE"); s != "" {
		code, err := strconv.Atoi(s)
		if err != nil || code < 0 || code > 255 {
			fmt.Fprintf(stderr, "app: APP_EXIT_CODE=%q is not an exit code (0-255)\n", s)
			return 2
		}
		fmt.Fprintf(stderr, "app: exiting with code %d as APP_EXIT_CODE asks\n", code)
		return code
	}
	opts, err := parseOptions(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "app: %v\n", err)
		return 2
	}

	logger := log.New(stdout, "", 0)
	if opts.bootDelay > 0 {
		select {
		case <-time.After(opts.bootDelay):
		case <-ctx.Done():
			logger.Printf("stopped during boot delay (release %s)", opts.release)
			return 0
		}
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(opts.host, strconv.Itoa(opts.port)))
	if err != nil {
		fmt.Fprintf(stderr, "app: %v\n", err)
		return 1
	}
	a := newApp(opts, logger)
	srv := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	logger.Printf("listening on %s release %s pid %d", ln.Addr(), opts.release, os.Getpid())
	if ready != nil {
		ready(ln.Addr().String())
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		fmt.Fprintf(stderr, "app: serve: %v\n", err)
		return 1
	case <-ctx.Done():
	}

	logger.Printf("shutting down release %s", opts.release)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Printf("in-flight requests still running after %s; closing them", shutdownTimeout)
		srv.Close()
	}
	// Hijacked WebSocket connections are not covered by Shutdown.
	a.closeWebSockets()
	logger.Printf("stopped release %s", opts.release)
	return 0
}

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	opts := options{
		release:      firstNonEmpty(getenv("ROLLBRIDGE_RELEASE_ID"), getenv("APP_VERSION"), defaultRelease),
		healthStatus: http.StatusOK,
		accessLog:    getenv("APP_ACCESS_LOG") == "1",
	}
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opts.host, "host", "127.0.0.1", "address to listen on")
	port := fs.String("port", "", "port to listen on (default $ROLLBRIDGE_PORT, then $PORT)")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	portStr := firstNonEmpty(*port, getenv("ROLLBRIDGE_PORT"), getenv("PORT"))
	if portStr == "" {
		return opts, errors.New("no port: pass --port N or set ROLLBRIDGE_PORT or PORT")
	}
	p, err := strconv.Atoi(portStr)
	if err != nil || p < 0 || p > 65535 {
		return opts, fmt.Errorf("port %q is not a TCP port (0-65535)", portStr)
	}
	opts.port = p

	if s := getenv("APP_BOOT_DELAY_MS"); s != "" {
		ms, err := strconv.Atoi(s)
		if err != nil || ms < 0 {
			return opts, fmt.Errorf("APP_BOOT_DELAY_MS=%q is not a non-negative number of milliseconds", s)
		}
		opts.bootDelay = time.Duration(ms) * time.Millisecond
	}
	if s := getenv("APP_HEALTH_STATUS"); s != "" {
		code, err := strconv.Atoi(s)
		if err != nil || code < 200 || code > 599 {
			return opts, fmt.Errorf("APP_HEALTH_STATUS=%q is not an HTTP status code (200-599)", s)
		}
		opts.healthStatus = code
	}
	return opts, nil
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// app holds the handlers' shared state.
type app struct {
	opts   options
	logger *log.Logger

	mu      sync.Mutex
	sockets map[*wsConn]struct{}
	wg      sync.WaitGroup // running WebSocket handlers
}

func newApp(opts options, logger *log.Logger) *app {
	if opts.release == "" {
		opts.release = defaultRelease
	}
	if opts.healthStatus == 0 {
		opts.healthStatus = http.StatusOK
	}
	return &app{opts: opts, logger: logger, sockets: make(map[*wsConn]struct{})}
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", a.ping)
	mux.HandleFunc("GET /{$}", a.hello)
	mux.HandleFunc("GET /version", a.version)
	mux.HandleFunc("GET /bytes", a.bytes)
	mux.HandleFunc("POST /upload", a.upload)
	mux.HandleFunc("GET /events", a.events)
	mux.HandleFunc("GET /ws", a.websocket)
	if !a.opts.accessLog {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		mux.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		a.logger.Printf("%s %s %d %dB %s", r.Method, r.URL.RequestURI(), status, rec.bytes, time.Since(start).Round(time.Microsecond))
	})
}

func (a *app) ping(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(a.opts.healthStatus)
	if a.opts.healthStatus == http.StatusOK {
		io.WriteString(w, "ok")
		return
	}
	io.WriteString(w, http.StatusText(a.opts.healthStatus))
}

func (a *app) hello(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "hello from release %s\n", a.opts.release)
}

func (a *app) version(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Release string `json:"release"`
		PID     int    `json:"pid"`
	}{a.opts.release, os.Getpid()})
}

// filler is the content of /bytes responses, written in chunks.
var filler = []byte(strings.Repeat("x", 64<<10))

func (a *app) bytes(w http.ResponseWriter, r *http.Request) {
	n := 0
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > maxBytesBody {
			http.Error(w, fmt.Sprintf("n must be a whole number from 0 to %d", maxBytesBody), http.StatusBadRequest)
			return
		}
		n = v
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	for n > 0 {
		chunk := min(n, len(filler))
		if _, err := w.Write(filler[:chunk]); err != nil {
			return
		}
		n -= chunk
	}
}

func (a *app) upload(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, fmt.Sprintf("reading body after %d bytes: %v", n, err), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "%d\n", n)
}

func (a *app) events(w http.ResponseWriter, r *http.Request) {
	count := defaultEventsCnt
	if s := r.URL.Query().Get("count"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > maxEventCount {
			http.Error(w, fmt.Sprintf("count must be a whole number from 0 to %d", maxEventCount), http.StatusBadRequest)
			return
		}
		count = v
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	ticker := time.NewTicker(eventInterval)
	defer ticker.Stop()
	for i := 1; i <= count; i++ {
		if i > 1 {
			select {
			case <-ticker.C:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "data: tick %d\n\n", i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// recorder notes the status and size of a response for the access log.
// Flush reaches the real writer through Unwrap; Hijack is forwarded so a
// WebSocket upgrade is logged as 101.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// ---- WebSocket echo (RFC 6455, unfragmented messages only) ----

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
