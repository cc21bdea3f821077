package h1_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/h1"
	"github.com/rollbridge/rollbridge-go/internal/h1/h1test"
)

// scanned is what the fast path would act on: the request a Fast head
// describes, in the reference's terms (h1test.Message, without the URL,
// which the fast path never builds: it forwards the target as it came).
func scanned(raw []byte, h *h1.RequestHead) h1test.Message {
	hdr := http.Header{}
	var key []byte
	for _, f := range h.Fields[:h.N] {
		key = h1.AppendCanonical(key[:0], f.Name.Of(raw))
		if string(key) == "Host" {
			continue // net/http moves it to Request.Host
		}
		hdr[string(key)] = append(hdr[string(key)], string(f.Value.Of(raw)))
	}
	r := &http.Request{
		Method:     string(h.Method.Of(raw)),
		RequestURI: string(h.Target.Of(raw)),
		Proto:      fmt.Sprintf("HTTP/1.%d", h.Minor),
		ProtoMajor: 1, ProtoMinor: h.Minor,
		Header: hdr, Close: h.Close,
	}
	if h.Host >= 0 {
		r.Host = string(h.Fields[h.Host].Value.Of(raw))
	}
	m := h1test.Record(r, nil, nil)
	m.Body = []byte{}
	return m
}

// checkScan is the differential property: whenever ScanRequest says Fast,
// ReadRequest and a real net/http server read the same request from the
// same bytes (same length, method, target, version, fields, Host, no body,
// same keep-alive decision), and every shorter prefix of the head gets
// NeedMore, so a loop never acts on half a head.
func checkScan(t *testing.T, raw []byte, withNetHTTP bool) h1.Verdict {
	t.Helper()
	var h h1.RequestHead
	v := h1.ScanRequest(raw, fuzzMaxHeaderBytes, &h)
	switch v {
	case h1.NeedMore:
		if len(raw) >= fuzzMaxHeaderBytes {
			t.Fatalf("input %q: NeedMore at %d bytes, over the limit %d", raw, len(raw), fuzzMaxHeaderBytes)
		}
		return v
	case h1.Slow:
		return v
	}
	if h.Len <= 0 || h.Len > len(raw) || h.Len > fuzzMaxHeaderBytes {
		t.Fatalf("input %q: Fast with length %d", raw, h.Len)
	}
	for k := 0; k < h.Len; k++ {
		var p h1.RequestHead
		if pv := h1.ScanRequest(raw[:k], fuzzMaxHeaderBytes, &p); pv != h1.NeedMore {
			t.Fatalf("input %q: prefix of %d bytes of a %d-byte Fast head: %v", raw, k, h.Len, pv)
		}
	}
	want := scanned(raw, &h)

	src := bytes.NewReader(raw)
	br := bufio.NewReaderSize(src, 16)
	req, err := h1.ReadRequest(br, h1.Limits{MaxHeaderBytes: fuzzMaxHeaderBytes})
	if err != nil {
		t.Fatalf("input %q: Fast, but ReadRequest refuses it: %v", raw, err)
	}
	if used := len(raw) - src.Len() - br.Buffered(); used != h.Len {
		t.Fatalf("input %q: Fast head of %d bytes, ReadRequest read %d", raw, h.Len, used)
	}
	if req.Body != http.NoBody || req.ContentLength != 0 || req.TransferEncoding != nil {
		t.Fatalf("input %q: Fast, but ReadRequest frames a body (length %d, %v)", raw, req.ContentLength, req.TransferEncoding)
	}
	if keep := h1.KeepAlive(req); keep == h.Close {
		t.Fatalf("input %q: Fast says close=%v, ReadRequest's KeepAlive %v", raw, h.Close, keep)
	}
	got := h1test.Record(req, []byte{}, nil)
	got.URL = ""
	if d := diffMessage(want, got); d != "" {
		t.Fatalf("input %q: Fast and ReadRequest disagree: %s", raw, d)
	}
	if withNetHTTP {
		// A second request after the head: net/http reads it exactly
		// when the Fast head keeps the connection.
		next := "GET /next HTTP/1.1\r\nHost: n\r\n\r\n"
		ref := h1test.NetHTTP(append(raw[:h.Len:h.Len], next...), fuzzMaxHeaderBytes)
		msgs := 2
		if h.Close {
			msgs = 1
		}
		if ref.Status != 0 || len(ref.Messages) != msgs {
			t.Fatalf("input %q: Fast (close %v), but net/http answers %d with %d messages", raw, h.Close, ref.Status, len(ref.Messages))
		}
		m := ref.Messages[0]
		m.URL = ""
		if d := diffMessage(want, m); d != "" {
			t.Fatalf("input %q: Fast and net/http disagree: %s", raw, d)
		}
	}
	return v
}

func diffMessage(a, b h1test.Message) string {
	sa, sb := fmt.Sprintf("%+v", a), fmt.Sprintf("%+v", b)
	if sa == sb {
		return ""
	}
	return "scan " + sa + "\n   vs " + sb
}

// fastSeeds are requests as real clients send them: the fast path must
// take every one (a scanner that says Slow to everything would pass the
// differential test and be useless).
var fastSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	// curl 8
	"GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
	// wrk, hey, the bench's loadgen
	"GET /small HTTP/1.1\r\nHost: 127.0.0.1:41234\r\n\r\n",
	"GET /small HTTP/1.1\r\nHost: 127.0.0.1:41234\r\nUser-Agent: hey/0.0.1\r\nAccept-Encoding: gzip\r\n\r\n",
	// ab -k (HTTP/1.0 keep-alive) and plain HTTP/1.0
	"GET /a?b=1 HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: localhost\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	// a browser navigation, lower-case names as HTTP/2-era clients write them
	"GET /users/42/edit?tab=profile&x=%2F%C3%A9 HTTP/1.1\r\nHost: app.example.com\r\nConnection: keep-alive\r\nsec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\nsec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: \"Linux\"\r\nUpgrade-Insecure-Requests: 1\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-User: ?1\r\nSec-Fetch-Dest: document\r\nReferer: https://app.example.com/users/42\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9,da;q=0.8\r\nCookie: _app_session=abc%3D%3D--def; rb_canary=0\r\n\r\n",
	// behind a TLS-terminating front end
	"GET /api/v1/items HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: app.example.com\r\nX-Forwarded-Port: 443\r\nForwarded: for=203.0.113.7;proto=https\r\nX-Request-Id: 6f1c\r\nAccept: application/json\r\n\r\n",
	// repeated fields keep their order, values keep inner spaces
	"DELETE /items/7 HTTP/1.1\r\nHost: a\r\nAccept: a\r\nX-Tag: one\r\nx-tag:  two  \r\nX-TAG:\t\r\nConnection: close\r\n\r\n",
	"OPTIONS /cors HTTP/1.1\r\nHost: a\r\nOrigin: https://b.example\r\nAccess-Control-Request-Method: PUT\r\n\r\n",
	"HEAD /file.tar.gz HTTP/1.1\r\nHost: a\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\n\r\n",
	// pipelined: the first head is Fast, its length ends at the second
	"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
}

// slowSeeds each have one thing the fast path leaves to ReadRequest.
var slowSeeds = []string{
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTrailer: X\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nClose: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET //a HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a;b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a?b c HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: one\r\n two\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", fuzzMaxHeaderBytes) + "\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: 1\r\n", h1.MaxScanFields) + "\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", fuzzMaxHeaderBytes),
	"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",
	"PRI / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nproxy_connection: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\ncontent_length: 5\r\n\r\n",
}

func TestScanVerdicts(t *testing.T) {
	for _, s := range fastSeeds {
		if v := checkScan(t, []byte(s), true); v != h1.Fast {
			t.Errorf("%q: %v, want fast", s, v)
		}
	}
	for _, s := range slowSeeds {
		if v := checkScan(t, []byte(s), true); v != h1.Slow {
			t.Errorf("%q: %v, want slow", s, v)
		}
	}
	for _, s := range []string{"", "GET", "GET / HTTP/1.1\r\nHost: a\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r"} {
		if v := checkScan(t, []byte(s), false); v != h1.NeedMore {
			t.Errorf("%q: %v, want need-more", s, v)
		}
	}
	// A head over MaxScanHead is Slow whatever the limit allows, and one
	// cut short under it waits.
	long := "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", h1.MaxScanHead) + "\r\n\r\n"
	var h h1.RequestHead
	if v := h1.ScanRequest([]byte(long), 1<<20, &h); v != h1.Slow {
		t.Errorf("a head of %d bytes: %v, want slow", len(long), v)
	}
	if v := h1.ScanRequest([]byte(long[:h1.MaxScanHead-1]), 0, &h); v != h1.NeedMore {
		t.Errorf("a partial head under MaxScanHead: %v, want need-more", v)
	}
	if v := h1.ScanRequest([]byte(long[:h1.MaxScanHead]), 0, &h); v != h1.Slow {
		t.Errorf("a partial head at MaxScanHead: %v, want slow", v)
	}
	// The largest field count still fits (MaxScanFields, Host included).
	s := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: 1\r\n", h1.MaxScanFields-1) + "\r\n"
	if v := checkScan(t, []byte(s), true); v != h1.Fast {
		t.Errorf("%d fields: %v, want fast", h1.MaxScanFields, v)
	}
}

// The pipelined seed's first head ends where the second begins.
func TestScanPipelined(t *testing.T) {
	raw := []byte(fastSeeds[len(fastSeeds)-1])
	var h h1.RequestHead
	if h1.ScanRequest(raw, 0, &h) != h1.Fast {
		t.Fatal("first head not fast")
	}
	rest := raw[h.Len:]
	if !bytes.HasPrefix(rest, []byte("GET /b ")) {
		t.Fatalf("first head's length %d leaves %q", h.Len, rest)
	}
	if h1.ScanRequest(rest, 0, &h) != h1.Fast || string(h.Target.Of(rest)) != "/b" || h.Len != len(rest) {
		t.Fatalf("second head: %q len %d", h.Target.Of(rest), h.Len)
	}
}

func TestScanAllocatesNothing(t *testing.T) {
	raw := []byte(fastSeeds[6])
	var h h1.RequestHead
	if n := testing.AllocsPerRun(100, func() {
		if h1.ScanRequest(raw, 0, &h) != h1.Fast {
			t.Fatal("not fast")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per scan", n)
	}
}

// FuzzScanDifferential holds ScanRequest to ReadRequest, which
// FuzzDifferential holds to net/http: on every input it calls Fast, both
// must read the same request, and a real net/http server too. It starts from every request seed of both
// tests.
func FuzzScanDifferential(f *testing.F) {
	for _, s := range slices.Concat(seeds, fastSeeds, slowSeeds) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkScan(t, raw, true)
	})
}

func BenchmarkScanRequest(b *testing.B) {
	for _, c := range []struct {
		name string
		raw  string
	}{{"loadgen", fastSeeds[2]}, {"browser", fastSeeds[6]}} {
		raw := []byte(c.raw)
		b.Run(c.name, func(b *testing.B) {
			var h h1.RequestHead
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				h1.ScanRequest(raw, 0, &h)
			}
		})
		b.Run(c.name+"/ReadRequest", func(b *testing.B) {
			src := bytes.NewReader(raw)
			br := bufio.NewReader(src)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(raw)
				br.Reset(src)
				if _, err := h1.ReadRequest(br, h1.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
