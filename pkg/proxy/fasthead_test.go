package proxy

import (
	"bufio"
	"bytes"
	"net"
	"strings"
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
