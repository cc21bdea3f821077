package h1_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/h1"
)

// checkScanResponse: whenever ScanResponse says Fast, h1.ReadResponse and
// http.ReadResponse read the same answer to a GET from the same bytes
// (status, fields, length, close), the head ends where ScanResponse says,
// the body is ContentLength bytes, and every shorter prefix is NeedMore.
func checkScanResponse(t *testing.T, raw []byte) h1.Verdict {
	t.Helper()
	var h h1.ResponseHead
	v := h1.ScanResponse(raw, fuzzMaxHeaderBytes, &h)
	if v != h1.Fast {
		if v == h1.NeedMore && len(raw) >= fuzzMaxHeaderBytes {
			t.Fatalf("input %q: NeedMore over the limit", raw)
		}
		return v
	}
	for k := 0; k < h.Len; k++ {
		var p h1.ResponseHead
		if pv := h1.ScanResponse(raw[:k], fuzzMaxHeaderBytes, &p); pv != h1.NeedMore {
			t.Fatalf("input %q: prefix of %d bytes of a %d-byte Fast head: %v", raw, k, h.Len, pv)
		}
	}
	// What ScanResponse read, as a header: Connection goes when it says
	// close (net/http drops a "close" it acted on).
	want := http.Header{}
	var key []byte
	for _, f := range h.Fields[:h.N] {
		if f.Key == h1.KeyConnection && h.Close {
			continue
		}
		key = h1.AppendCanonical(key[:0], f.Name.Of(raw))
		want[string(key)] = append(want[string(key)], string(f.Value.Of(raw)))
	}
	body := raw[h.Len:min(len(raw), h.Len+int(min(h.ContentLength, int64(len(raw)))))]
	for _, ref := range []string{"h1", "net/http"} {
		src := bytes.NewReader(raw)
		br := bufio.NewReaderSize(src, 16)
		var res *http.Response
		var err error
		if ref == "h1" {
			res, err = h1.ReadResponse(br, http.MethodGet, h1.Limits{MaxHeaderBytes: fuzzMaxHeaderBytes}, nil)
		} else {
			res, err = http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		}
		if err != nil {
			t.Fatalf("input %q: Fast, but %s refuses it: %v", raw, ref, err)
		}
		if used := len(raw) - src.Len() - br.Buffered(); used != h.Len {
			t.Fatalf("input %q: Fast head of %d bytes, %s read %d", raw, h.Len, ref, used)
		}
		if res.StatusCode != h.Status || res.ContentLength != h.ContentLength || res.Close != h.Close || res.TransferEncoding != nil || res.Trailer != nil {
			t.Fatalf("input %q: Fast status %d length %d close %v; %s status %d length %d close %v te %v trailer %v",
				raw, h.Status, h.ContentLength, h.Close, ref, res.StatusCode, res.ContentLength, res.Close, res.TransferEncoding, res.Trailer)
		}
		if !equalHeader(want, res.Header) {
			t.Fatalf("input %q: Fast fields %v, %s %v", raw, want, ref, res.Header)
		}
		got, _ := io.ReadAll(res.Body)
		if !bytes.Equal(got, body) {
			t.Fatalf("input %q: Fast body %q, %s %q", raw, body, ref, got)
		}
	}
	return v
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

var fastResponseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	// net/http's own server
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Thu, 03 Dec 2026 09:00:00 GMT\r\nContent-Length: 5\r\n\r\nhello",
	// Puma, Node, with hop-by-hop fields and lower-case names
	"HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\nx-request-id: 1\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\ncontent-length: 0\r\n\r\n",
	"HTTP/1.1 302 Found\r\nLocation: /login\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 500\r\nContent-Length: 3\r\nTE: x\r\nProxy-Connection: x\r\n\r\nerr",
	"HTTP/1.1 599 Custom Reason \x01 with bytes\r\nContent-Length: 0\r\n\r\n",
	// the body is not the head's business: a short read is still Fast
	"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
}

var slowResponseSeeds = []string{
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\n\r\nuntil close",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 2 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551621\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: a\r\nContent-Type: b\r\n\r\nhello",
	"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"HTTP/1.1 199 x\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 600 x\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 20x OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nPragma: no-cache\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTrailer: X\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nUpgrade: h2c\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close, x\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nClose: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nConnection: close\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: a\r\nDate: b\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: a\r\n b\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX : a\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: a\x00\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: " + strings.Repeat("x", fuzzMaxHeaderBytes) + "\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + strings.Repeat("X: 1\r\n", h1.MaxScanFields) + "\r\n",
}

func TestScanResponseVerdicts(t *testing.T) {
	for _, s := range fastResponseSeeds {
		if v := checkScanResponse(t, []byte(s)); v != h1.Fast {
			t.Errorf("%q: %v, want fast", s, v)
		}
	}
	for _, s := range slowResponseSeeds {
		if v := checkScanResponse(t, []byte(s)); v != h1.Slow {
			t.Errorf("%q: %v, want slow", s, v)
		}
	}
	for _, s := range []string{"", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"} {
		if v := checkScanResponse(t, []byte(s)); v != h1.NeedMore {
			t.Errorf("%q: %v, want need-more", s, v)
		}
	}
	var h h1.ResponseHead
	raw := []byte(fastResponseSeeds[1])
	if n := testing.AllocsPerRun(100, func() { h1.ScanResponse(raw, 0, &h) }); n != 0 {
		t.Errorf("%v allocations per scan", n)
	}
}

// FuzzScanResponseDifferential holds ScanResponse to h1.ReadResponse and
// http.ReadResponse on every answer it calls Fast.
func FuzzScanResponseDifferential(f *testing.F) {
	for _, s := range slices.Concat(responseSeeds, fastResponseSeeds, slowResponseSeeds) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkScanResponse(t, raw)
	})
}
