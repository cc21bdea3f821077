package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// When this variable is set the test binary runs as the app itself, so the
// signal handling in main can be tested on a real process.
const runAsAppEnv = "ROLLBRIDGE_EXAMPLE_APP_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsAppEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func testOptions() options {
	return options{host: "127.0.0.1", release: "r42", healthStatus: http.StatusOK}
}

func startApp(t *testing.T, opts options) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newApp(opts, log.New(io.Discard, "", 0)).handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestPing(t *testing.T) {
	srv := startApp(t, testOptions())
	code, _, body := get(t, srv.URL+"/ping")
	if code != 200 || body != "ok" {
		t.Fatalf("GET /ping = %d %q, want 200 \"ok\"", code, body)
	}
}

func TestPingUnhealthy(t *testing.T) {
	opts := testOptions()
	opts.healthStatus = http.StatusServiceUnavailable
	srv := startApp(t, opts)
	if code, _, _ := get(t, srv.URL+"/ping"); code != http.StatusServiceUnavailable {
		t.Fatalf("GET /ping = %d, want 503", code)
	}
}

func TestHelloAndVersion(t *testing.T) {
	srv := startApp(t, testOptions())
	code, _, body := get(t, srv.URL+"/")
	if code != 200 || body != "hello from release r42\n" {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if code, _, _ := get(t, srv.URL+"/nope"); code != http.StatusNotFound {
		t.Fatalf("GET /nope = %d, want 404", code)
	}

	code, hdr, body := get(t, srv.URL+"/version")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /version = %d %s", code, hdr.Get("Content-Type"))
	}
	var v struct {
		Release string `json:"release"`
		PID     int    `json:"pid"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("GET /version body %q: %v", body, err)
	}
	if v.Release != "r42" || v.PID != os.Getpid() {
		t.Fatalf("GET /version = %+v, want release r42 pid %d", v, os.Getpid())
	}
}

func TestBytes(t *testing.T) {
	srv := startApp(t, testOptions())
	for _, n := range []int{0, 1, 100_000, 3 << 20} {
		code, hdr, body := get(t, srv.URL+"/bytes?n="+strconv.Itoa(n))
		if code != 200 || len(body) != n || hdr.Get("Content-Length") != strconv.Itoa(n) {
			t.Fatalf("GET /bytes?n=%d = %d, %d bytes, Content-Length %q", n, code, len(body), hdr.Get("Content-Length"))
		}
		if strings.Trim(body, "x") != "" {
			t.Fatalf("GET /bytes?n=%d: body is not all 'x'", n)
		}
	}
	for _, q := range []string{"-1", "abc", strconv.Itoa(maxBytesBody + 1)} {
		if code, _, _ := get(t, srv.URL+"/bytes?n="+q); code != http.StatusBadRequest {
			t.Errorf("GET /bytes?n=%s = %d, want 400", q, code)
		}
	}
}

func TestUpload(t *testing.T) {
	srv := startApp(t, testOptions())
	payload := bytes.Repeat([]byte("z"), 5<<20+3)
	resp, err := http.Post(srv.URL+"/upload", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != fmt.Sprintf("%d\n", len(payload)) {
		t.Fatalf("POST /upload = %d %q, want 200 %d", resp.StatusCode, body, len(payload))
	}
	if code, _, _ := get(t, srv.URL+"/upload"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /upload = %d, want 405", code)
	}
}

// readEvents reads SSE data lines until the stream ends.
func readEvents(t *testing.T, body io.Reader, each func(i int, data string)) []string {
	t.Helper()
	var got []string
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("unexpected SSE line %q", line)
		}
		got = append(got, data)
		if each != nil {
			each(len(got), data)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading events: %v", err)
	}
	return got
}

func TestEvents(t *testing.T) {
	srv := startApp(t, testOptions())
	resp, err := http.Get(srv.URL + "/events?count=3")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	got := readEvents(t, resp.Body, nil)
	want := []string{"tick 1", "tick 2", "tick 3"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events = %q, want %q", got, want)
	}

	if code, _, _ := get(t, srv.URL+"/events?count=-2"); code != http.StatusBadRequest {
		t.Fatalf("GET /events?count=-2 = %d, want 400", code)
	}
}

// TestEventsArriveOneByOne checks that each event is flushed on its own:
// the first one is readable while the handler is still producing the rest.
func TestEventsArriveOneByOne(t *testing.T) {
	srv := startApp(t, testOptions())
	resp, err := http.Get(srv.URL + "/events?count=1000")
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if err != nil || line != "data: tick 1\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	resp.Body.Close() // the handler notices the client left and returns
}

func TestAccessLog(t *testing.T) {
	lines := make(chan string, 16)
	opts := testOptions()
	opts.accessLog = true
	srv := httptest.NewServer(newApp(opts, log.New(lineWriter(lines), "", 0)).handler())
	defer srv.Close()
	get(t, srv.URL+"/bytes?n=10")
	select {
	case line := <-lines:
		if !strings.HasPrefix(line, "GET /bytes?n=10 200 10B ") {
			t.Fatalf("access log line %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no access log line")
	}
}

type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) {
	w <- strings.TrimSuffix(string(p), "\n")
	return len(p), nil
}

// ---- WebSocket, with a minimal hand-written client ----

func TestAcceptKey(t *testing.T) {
	// The worked example from RFC 6455 section 1.3.
	if got := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("acceptKey = %q", got)
	}
}

type wsClient struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialWS performs the opening handshake on addr (host:port).
func dialWS(t *testing.T, addr string) *wsClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", addr, key)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(key); got != want {
		t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	return &wsClient{conn: conn, r: r}
}

// send writes one frame, masked unless unmasked is set.
func (c *wsClient) send(t *testing.T, fin bool, op byte, payload []byte, unmasked bool) {
	t.Helper()
	var b0 byte = op
	if fin {
		b0 |= 0x80
	}
	frame := []byte{b0}
	var maskBit byte = 0x80
	if unmasked {
		maskBit = 0
	}
	switch n := len(payload); {
	case n <= 125:
		frame = append(frame, maskBit|byte(n))
	case n <= 0xFFFF:
		frame = append(frame, maskBit|126)
		frame = binary.BigEndian.AppendUint16(frame, uint16(n))
	default:
		frame = append(frame, maskBit|127)
		frame = binary.BigEndian.AppendUint64(frame, uint64(n))
	}
	body := append([]byte(nil), payload...)
	if !unmasked {
		var mask [4]byte
		rand.Read(mask[:])
		frame = append(frame, mask[:]...)
		for i := range body {
			body[i] ^= mask[i%4]
		}
	}
	if _, err := c.conn.Write(append(frame, body...)); err != nil {
		t.Fatal(err)
	}
}

// recv reads one server frame, which must be final and unmasked.
func (c *wsClient) recv(t *testing.T) (op byte, payload []byte) {
	t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		t.Fatalf("reading frame: %v", err)
	}
	if hdr[0]&0x80 == 0 || hdr[0]&0x70 != 0 {
		t.Fatalf("server frame byte 0 = %#x, want FIN and no reserved bits", hdr[0])
	}
	if hdr[1]&0x80 != 0 {
		t.Fatal("server frame is masked")
	}
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		io.ReadFull(c.r, ext[:])
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		io.ReadFull(c.r, ext[:])
		n = binary.BigEndian.Uint64(ext[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		t.Fatalf("reading payload: %v", err)
	}
	return hdr[0] & 0x0F, payload
}

// expectClose reads a close frame with code, answers it when reply is set
// (the server started the closing handshake), then expects the server to end
// the TCP stream.
func (c *wsClient) expectClose(t *testing.T, code int, reply bool) {
	t.Helper()
	op, payload := c.recv(t)
	if op != opClose || len(payload) < 2 {
		t.Fatalf("got opcode %#x payload %q, want a close frame", op, payload)
	}
	if got := int(binary.BigEndian.Uint16(payload)); got != code {
		t.Fatalf("close code %d (%q), want %d", got, payload[2:], code)
	}
	if reply {
		c.send(t, true, opClose, payload[:2], false)
	}
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

func TestWebSocketEcho(t *testing.T) {
	srv := startApp(t, testOptions())
	c := dialWS(t, srv.Listener.Addr().String())

	c.send(t, true, opText, []byte("héllo"), false)
	if op, p := c.recv(t); op != opText || string(p) != "héllo" {
		t.Fatalf("echo = %#x %q", op, p)
	}
	for _, n := range []int{0, 125, 126, 300, 0xFFFF, 70_000} { // 7-bit, 16-bit and 64-bit lengths
		msg := make([]byte, n)
		rand.Read(msg)
		c.send(t, true, opBinary, msg, false)
		if op, p := c.recv(t); op != opBinary || !bytes.Equal(p, msg) {
			t.Fatalf("binary echo of %d bytes: opcode %#x, %d bytes back", n, op, len(p))
		}
	}
	c.send(t, true, opPing, []byte("are you there"), false)
	if op, p := c.recv(t); op != opPong || string(p) != "are you there" {
		t.Fatalf("ping answer = %#x %q", op, p)
	}
	c.send(t, true, opPong, []byte("unsolicited"), false) // ignored
	c.send(t, true, opText, []byte("still here"), false)
	if op, p := c.recv(t); op != opText || string(p) != "still here" {
		t.Fatalf("echo after pong = %#x %q", op, p)
	}

	c.send(t, true, opClose, binary.BigEndian.AppendUint16(nil, closeNormal), false)
	c.expectClose(t, closeNormal, false)
}

func TestWebSocketProtocolErrors(t *testing.T) {
	srv := startApp(t, testOptions())
	addr := srv.Listener.Addr().String()
	tests := []struct {
		name string
		send func(c *wsClient)
		code int
	}{
		{"unmasked frame", func(c *wsClient) { c.send(t, true, opText, []byte("x"), true) }, closeProtocolError},
		{"fragmented message", func(c *wsClient) { c.send(t, false, opText, []byte("part"), false) }, closeUnsupported},
		{"stray continuation", func(c *wsClient) { c.send(t, true, opContinuation, []byte("x"), false) }, closeUnsupported},
		{"invalid UTF-8 text", func(c *wsClient) { c.send(t, true, opText, []byte{0xff, 0xfe}, false) }, closeInvalidData},
		{"unknown opcode", func(c *wsClient) { c.send(t, true, 0x3, nil, false) }, closeProtocolError},
		{"oversized ping", func(c *wsClient) { c.send(t, true, opPing, make([]byte, 126), false) }, closeProtocolError},
		{"reserved close code", func(c *wsClient) {
			c.send(t, true, opClose, binary.BigEndian.AppendUint16(nil, 1005), false)
		}, closeProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialWS(t, addr)
			tt.send(c)
			c.expectClose(t, tt.code, true)
		})
	}
}

func TestWebSocketEmptyClose(t *testing.T) {
	srv := startApp(t, testOptions())
	c := dialWS(t, srv.Listener.Addr().String())
	c.send(t, true, opClose, nil, false)
	if op, p := c.recv(t); op != opClose || len(p) != 0 {
		t.Fatalf("got %#x %q, want an empty close frame", op, p)
	}
}

func TestWebSocketRejectsPlainRequests(t *testing.T) {
	srv := startApp(t, testOptions())
	if code, _, _ := get(t, srv.URL+"/ws"); code != http.StatusUpgradeRequired {
		t.Fatalf("plain GET /ws = %d, want 426", code)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "too-short")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad key = %d, want 400", resp.StatusCode)
	}
}

// TestWebSocketInterop talks to the echo server with a full client library.
func TestWebSocketInterop(t *testing.T) {
	opts := testOptions()
	opts.accessLog = true // the upgrade goes through the access-log wrapper
	srv := httptest.NewServer(newApp(opts, log.New(io.Discard, "", 0)).handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	big := bytes.Repeat([]byte{1, 2, 3}, 100_000)
	for _, m := range []struct {
		typ  websocket.MessageType
		data []byte
	}{{websocket.MessageText, []byte("hi")}, {websocket.MessageBinary, big}} {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != m.typ || !bytes.Equal(data, m.data) {
			t.Fatalf("echo: type %v, %d bytes; want %v, %d bytes", typ, len(data), m.typ, len(m.data))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
}

// ---- run: options, exit codes and graceful shutdown ----

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		args    []string
		env     map[string]string
		port    int
		release string
		wantErr string
	}{
		{args: []string{"--port", "1234"}, env: map[string]string{"ROLLBRIDGE_PORT": "5", "PORT": "6"}, port: 1234, release: "dev"},
		{env: map[string]string{"ROLLBRIDGE_PORT": "5", "PORT": "6", "APP_VERSION": "v2"}, port: 5, release: "v2"},
		{env: map[string]string{"PORT": "6", "ROLLBRIDGE_RELEASE_ID": "r1", "APP_VERSION": "v2"}, port: 6, release: "r1"},
		{env: map[string]string{}, wantErr: "no port"},
		{env: map[string]string{"PORT": "70000"}, wantErr: "not a TCP port"},
		{env: map[string]string{"PORT": "1", "APP_HEALTH_STATUS": "abc"}, wantErr: "APP_HEALTH_STATUS"},
		{env: map[string]string{"PORT": "1", "APP_BOOT_DELAY_MS": "-1"}, wantErr: "APP_BOOT_DELAY_MS"},
		{args: []string{"--port", "1", "extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		opts, err := parseOptions(tt.args, envMap(tt.env), io.Discard)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseOptions(%q, %v) error %v, want one mentioning %q", tt.args, tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || opts.port != tt.port || opts.release != tt.release || opts.host != "127.0.0.1" {
			t.Errorf("parseOptions(%q, %v) = %+v, %v", tt.args, tt.env, opts, err)
		}
	}
}

func TestRunExitCode(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--port", "0"}, envMap(map[string]string{"APP_EXIT_CODE": "3"}), io.Discard, &stderr, nil)
	if code != 3 || !strings.Contains(stderr.String(), "3") {
		t.Fatalf("run with APP_EXIT_CODE=3 = %d (%q)", code, stderr.String())
	}
	if code := run(context.Background(), nil, envMap(map[string]string{"APP_EXIT_CODE": "x"}), io.Discard, io.Discard, nil); code != 2 {
		t.Fatalf("run with APP_EXIT_CODE=x = %d, want 2", code)
	}
	if code := run(context.Background(), nil, envMap(nil), io.Discard, io.Discard, nil); code != 2 {
		t.Fatalf("run without a port = %d, want 2", code)
	}
}

// startRun runs the app on an ephemeral port until the returned cancel is called.
func startRun(t *testing.T, env map[string]string) (addr string, stop func() int, stdout *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan int, 1)
	stdout = &syncBuffer{}
	go func() {
		done <- run(ctx, []string{"--port", "0"}, envMap(env), stdout, io.Discard, func(a string) { addrc <- a })
	}()
	select {
	case addr = <-addrc:
	case code := <-done:
		t.Fatalf("run exited with %d before listening", code)
	}
	stopped := false
	stop = func() int {
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	return addr, stop, stdout
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunFinishesInFlightRequestsOnStop(t *testing.T) {
	addr, stop, stdout := startRun(t, map[string]string{"ROLLBRIDGE_RELEASE_ID": "r7", "APP_BOOT_DELAY_MS": "1"})
	if !strings.Contains(stdout.String(), "listening on "+addr+" release r7") {
		t.Fatalf("start line missing: %q", stdout.String())
	}
	resp, err := http.Get("http://" + addr + "/events?count=4")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	codec := make(chan int, 1)
	got := readEvents(t, resp.Body, func(i int, _ string) {
		if i == 1 { // a request is in flight: stop the app now
			go func() { codec <- stop() }()
		}
	})
	if len(got) != 4 {
		t.Fatalf("in-flight stream cut short: %q", got)
	}
	if code := <-codec; code != 0 {
		t.Fatalf("run returned %d after a graceful stop, want 0", code)
	}
	if _, err := http.Get("http://" + addr + "/ping"); err == nil {
		t.Fatal("app still accepting connections after stop")
	}
}

func TestRunClosesWebSocketsOnStop(t *testing.T) {
	addr, stop, _ := startRun(t, nil)
	c := dialWS(t, addr)
	c.send(t, true, opText, []byte("x"), false)
	c.recv(t) // the socket is open and tracked
	codec := make(chan int, 1)
	go func() { codec <- stop() }()
	c.expectClose(t, closeGoingAway, true)
	c.conn.Close() // as a client does once the server ended the stream
	if code := <-codec; code != 0 {
		t.Fatalf("run returned %d, want 0", code)
	}
}

func TestRunStopDuringBootDelay(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	env := envMap(map[string]string{"APP_BOOT_DELAY_MS": "600000"})
	if code := run(ctx, []string{"--port", "0"}, env, io.Discard, io.Discard, func(string) { t.Error("listened") }); code != 0 {
		t.Fatalf("run = %d, want 0", code)
	}
}

// TestSIGTERM runs the test binary as the app and stops it with a real
// signal while a request is in flight.
func TestSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "--port", "0")
	cmd.Env = append(os.Environ(), runAsAppEnv+"=1", "ROLLBRIDGE_RELEASE_ID=sig", "APP_ACCESS_LOG=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	if !lines.Scan() {
		t.Fatal("app printed nothing")
	}
	first := lines.Text()
	addr, ok := strings.CutPrefix(first, "listening on ")
	if !ok {
		t.Fatalf("start line %q", first)
	}
	addr, _, _ = strings.Cut(addr, " ")
	if !strings.Contains(first, "release sig pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("start line %q lacks release and pid", first)
	}
	rest := make(chan string, 1)
	go func() {
		var b strings.Builder
		for lines.Scan() {
			b.WriteString(lines.Text() + "\n")
		}
		rest <- b.String()
	}()

	resp, err := http.Get("http://" + addr + "/events?count=3")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := readEvents(t, resp.Body, func(i int, _ string) {
		if i == 1 {
			cmd.Process.Signal(syscall.SIGTERM)
		}
	})
	if len(got) != 3 {
		t.Fatalf("stream cut short by SIGTERM: %q", got)
	}
	log := <-rest // read all output before Wait closes the pipe
	if err := cmd.Wait(); err != nil {
		t.Fatalf("app exit after SIGTERM: %v", err)
	}
	for _, want := range []string{"GET /events?count=3 200", "shutting down release sig", "stopped release sig"} {
		if !strings.Contains(log, want) {
			t.Errorf("app output lacks %q:\n%s", want, log)
		}
	}
}
