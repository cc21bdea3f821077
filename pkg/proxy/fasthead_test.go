package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/h1"
)

// fastHeadSeeds are Fast requests that reach every branch of the policy:
// each forwarding-record field sent, sent empty and not sent; Host with
// and without a port, bracketed IPv6, none on HTTP/1.0; hop-by-hop fields;
// lower-case and repeated names.
var fastHeadSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /x?y=1 HTTP/1.1\r\nHost: app.example:8443\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a:b:12\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: \r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nHost: h:1\r\n\r\n",
	"GET /api HTTP/1.1\r\nhost: app\r\nx-forwarded-for: 198.51.100.1, 10.0.0.2\r\nx-forwarded-proto: https\r\nx-forwarded-host: app.example\r\nx-forwarded-port: 443\r\nforwarded: for=198.51.100.1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For:\r\nX-Forwarded-Proto:\r\nX-Forwarded-Host:\r\nX-Forwarded-Port:\r\nForwarded:\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nProxy-Authenticate: x\r\n\r\n",
	"DELETE /i HTTP/1.1\r\nHost: a\r\nx-tag: 1\r\nX-TAG: 2\r\nAccept: a\r\nx-Tag:\t3 \r\nsec-websocket-key: not an upgrade\r\n\r\n",
}

// checkFastHead compares, for one Fast request, the head appendAppHead
// writes with the head writeHead writes for the request ReadRequest reads
// from the same bytes, field line for field line (readWireHead sorts the
// lines by name, keeping the order within a name).
func checkFastHead(t *testing.T, raw []byte, peer string) bool {
	t.Helper()
	var h h1.RequestHead
	if h1.ScanRequest(raw, 0, &h) != h1.Fast {
		return false
	}
	req, err := h1.ReadRequest(bufio.NewReader(bytes.NewReader(raw)), h1.Limits{})
	if err != nil {
		t.Fatalf("input %q: Fast, but ReadRequest: %v", raw, err)
	}
	req.RemoteAddr = peer
	var want bytes.Buffer
	bw := bufio.NewWriter(&want)
	if err := writeHead(bw, req, ""); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	ip, _, _ := net.SplitHostPort(peer)
	got := appendAppHead(nil, raw, &h, ip)

	wh, err := readWireHead(bufio.NewReader(&want))
	if err != nil {
		t.Fatalf("input %q: writeHead's head %q: %v", raw, want.Bytes(), err)
	}
	gh, err := readWireHead(bufio.NewReader(bytes.NewReader(got)))
	if err != nil {
		t.Fatalf("input %q: appendAppHead's head %q: %v", raw, got, err)
	}
	if wh.String() != gh.String() {
		t.Fatalf("input %q from %s:\n net/http path: %s\n fast path:     %s", raw, peer, wh, gh)
	}
	if !bytes.HasSuffix(got, []byte("\r\n\r\n")) || bytes.Count(got, []byte("\r\n\r\n")) != 1 {
		t.Fatalf("input %q: fast head %q does not end at one blank line", raw, got)
	}
	return true
}

func TestFastHeadPolicy(t *testing.T) {
	for _, s := range fastHeadSeeds {
		for _, peer := range []string{"203.0.113.9:5555", "[2001:db8::7]:443"} {
			if !checkFastHead(t, []byte(s), peer) {
				t.Errorf("%q is not Fast: the seed tests nothing", s)
			}
		}
	}
}

func TestFastHeadAllocatesNothing(t *testing.T) {
	raw := []byte(fastHeadSeeds[8])
	var h h1.RequestHead
	if h1.ScanRequest(raw, 0, &h) != h1.Fast {
		t.Fatal("not fast")
	}
	dst := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { dst = appendAppHead(dst[:0], raw, &h, "203.0.113.9") }); n != 0 {
		t.Fatalf("%v allocations per head", n)
	}
}

// FuzzFastHeadPolicy: on any input ScanRequest calls Fast, the app gets
// the same head from the event-loop path as from the net/http path.
func FuzzFastHeadPolicy(f *testing.F) {
	for _, s := range fastHeadSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte("GET /a HTTP/1.1\r\nHost: a\r\nX-Forwarded-Port: 1, 2\r\n\r\n"))
	f.Add([]byte(strings.Repeat("GET /p HTTP/1.1\r\nHost: x:1\r\n\r\n", 2)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkFastHead(t, raw, "192.0.2.1:1234")
	})
}

func BenchmarkFastHead(b *testing.B) {
	raw := []byte(fastHeadSeeds[1])
	var h h1.RequestHead
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if h1.ScanRequest(raw, 0, &h) != h1.Fast {
			b.Fatal("not fast")
		}
		dst = appendAppHead(dst[:0], raw, &h, "203.0.113.9")
	}
}

// answerApp answers every request with the bytes in answer, keeping the
// connection unless closeAfter is set: an app whose answer a test picks
// byte for byte.
type answerApp struct {
	addr       string
	answer     atomic.Pointer[[]byte]
	closeAfter atomic.Bool
}

func newAnswerApp(t testing.TB) *answerApp {
	app := &answerApp{}
	app.addr = serveConns(t, func(_ int, c net.Conn) func() {
		return func() {
			br := bufio.NewReader(c)
			for {
				if _, err := readWireHead(br); err != nil {
					return
				}
				if _, err := c.Write(*app.answer.Load()); err != nil || app.closeAfter.Load() {
					return
				}
			}
		}
	})
	return app
}

// clientKinds are the four ways a client's side changes the answer's
// head: HTTP/1.1 or 1.0, keeping the connection or not.
var clientKinds = []struct {
	request string
	c       clientAnswer
}{
	{"GET /p HTTP/1.1\r\nHost: x\r\n\r\n", clientAnswer{minor: 1}},
	{"GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", clientAnswer{minor: 1, close: true}},
	{"GET /p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", clientAnswer{minor: 0}},
	{"GET /p HTTP/1.0\r\n\r\n", clientAnswer{minor: 0, close: true}},
}

// checkFastAnswer sends raw, when ScanResponse calls it Fast, as the
// app's answer through the proxy's net/http path for each kind of client,
// and compares the head and body the client got with appendClientHead's,
// line for line. The Date net/http adds is the one value taken from what
// the client got.
func checkFastAnswer(t *testing.T, front string, app *answerApp, raw []byte) bool {
	t.Helper()
	var h h1.ResponseHead
	if h1.ScanResponse(raw, 0, &h) != h1.Fast || h.ContentLength > 1<<16 {
		return false
	}
	body := make([]byte, h.ContentLength)
	copy(body, raw[h.Len:])
	answer := append(raw[:h.Len:h.Len], body...)
	app.answer.Store(&answer)
	app.closeAfter.Store(h.Close)
	for _, k := range clientKinds {
		got := rawExchange(t, front, k.request)
		c := k.c
		if h.Date < 0 {
			c.date = []byte(fieldValue(got.fields, "Date"))
		}
		if needsSniff(answer, &h) {
			c.sniffed = http.DetectContentType(body[:min(len(body), 512)])
		}
		head := appendClientHead(nil, answer, &h, c)
		want, err := readWireHead(bufio.NewReader(io.MultiReader(bytes.NewReader(head), bytes.NewReader(body))))
		if err != nil {
			t.Fatalf("answer %q: appendClientHead's head %q: %v", raw, head, err)
		}
		if want.String() != got.String() {
			t.Fatalf("answer %q to %q:\n net/http path: %s\n fast path:     %s", raw, k.request, got, want)
		}
	}
	return true
}

var fastAnswerSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n<html>hi</html",
	"HTTP/1.1 201 Made\r\ncontent-length: 5\r\ncontent-encoding: gzip\r\n\r\n\x1f\x8b\x08\x00\x00",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Encoding:\r\n\r\n{}\n",
	"HTTP/1.1 404 Not Found\r\nDate: Thu, 03 Dec 2026 09:00:00 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 302 Found\r\nLocation: /x\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 599 Odd\r\nTE: x\r\nProxy-Authenticate: y\r\nX-Z:  v  \r\nContent-Length: 1\r\n\r\nz",
	"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 4\r\n\r\nbusy",
}

func TestFastAnswerPolicy(t *testing.T) {
	app := newAnswerApp(t)
	p, url, _ := newProxy(t)
	activate(p, "v1", app.addr)
	front := strings.TrimPrefix(url, "http://")
	for _, s := range fastAnswerSeeds {
		if !checkFastAnswer(t, front, app, []byte(s)) {
			t.Errorf("%q is not Fast: the seed tests nothing", s)
		}
	}
}

func TestFastAnswerAllocatesNothing(t *testing.T) {
	raw := []byte(fastAnswerSeeds[1])
	var h h1.ResponseHead
	if h1.ScanResponse(raw, 0, &h) != h1.Fast {
		t.Fatal("not fast")
	}
	dst := make([]byte, 0, 4096)
	c := clientAnswer{minor: 1, date: []byte("Thu, 03 Dec 2026 09:00:00 GMT"), sniffed: "text/html; charset=utf-8"}
	if n := testing.AllocsPerRun(100, func() { dst = appendClientHead(dst[:0], raw, &h, c) }); n != 0 {
		t.Fatalf("%v allocations per head", n)
	}
}

// FuzzFastAnswerPolicy: on any answer ScanResponse calls Fast, a client
// gets the same answer from the event-loop path as through the proxy's
// net/http path.
func FuzzFastAnswerPolicy(f *testing.F) {
	for _, s := range fastAnswerSeeds {
		f.Add([]byte(s))
	}
	app := newAnswerApp(f)
	p, url, _ := newProxy(f)
	activate(p, "v1", app.addr)
	front := strings.TrimPrefix(url, "http://")
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkFastAnswer(t, front, app, raw)
	})
}

// BenchmarkFastHeads is the head work of one proxied request on the
// event-loop path: both scans and both heads written, the same work as
// bench/floor's BenchmarkHeads measures for its instruments.
func BenchmarkFastHeads(b *testing.B) {
	req := []byte("GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: loadgen\r\nAccept: */*\r\n\r\n")
	res := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Thu, 03 Dec 2026 09:00:00 GMT\r\nContent-Length: 2\r\n\r\nok")
	var rh h1.RequestHead
	var ah h1.ResponseHead
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if h1.ScanRequest(req, 0, &rh) != h1.Fast {
			b.Fatal("request not fast")
		}
		dst = appendAppHead(dst[:0], req, &rh, "127.0.0.1")
		if h1.ScanResponse(res, 0, &ah) != h1.Fast {
			b.Fatal("answer not fast")
		}
		dst = appendClientHead(dst[:0], res, &ah, clientAnswer{minor: rh.Minor, close: rh.Close})
	}
}
