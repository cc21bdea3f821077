package h1_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/h1"
	"github.com/rollbridge/rollbridge-go/internal/h1/h1test"
)

// Every stricter rule must be known to the differential test, or the test
// would fail on it as a disagreement (or worse, be taught to ignore one).
func TestRulesKnownToDifferentialTest(t *testing.T) {
	for _, r := range h1.Rules {
		if _, ok := h1test.Stricter[string(r)]; !ok {
			t.Errorf("rule %q has no predicate in h1test.Stricter", r)
		}
	}
	if len(h1test.Stricter) != len(h1.Rules) {
		t.Errorf("h1test.Stricter has %d rules, h1.Rules %d", len(h1test.Stricter), len(h1.Rules))
	}
}

// The cases net/http frames one way and a front end could frame another
// way: h1 refuses each with the status a server must answer, by its rule.
func TestStricterRules(t *testing.T) {
	cases := []struct {
		raw    string
		status int
		rule   h1.Rule
	}{
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, h1.RuleCLAndTE},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", 400, h1.RuleDuplicateCL},
		{"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, h1.RuleTEHTTP10},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400, h1.RuleObsFold},
		{"GET / HTTP/1.1\nHost: a\n\n", 400, h1.RuleBareLF},
		{"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, h1.RuleLeadingEmpty},
		{"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, h1.RuleHTTPMinor},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, h1.RuleH2Preface},
		{"POST / HTTP/1.1\r\nHost: a\r\nExpect: foo, 100-continue\r\nContent-Length: 1\r\n\r\na", 417, h1.RuleExpect},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 2000) + "\r\n\r\n", 431, h1.RuleHeadSize},
	}
	for _, c := range cases {
		_, err := h1.ReadRequest(bufio.NewReader(strings.NewReader(c.raw)), h1.Limits{MaxHeaderBytes: 1024})
		var he *h1.Error
		if !errors.As(err, &he) || he.Status != c.status || he.Rule != c.rule {
			t.Errorf("%q: got %v, want %d by %s", c.raw, err, c.status, c.rule)
		}
	}
}

// Rules that apply inside a chunked body surface as the body's read error.
func TestStricterRulesInBody(t *testing.T) {
	for raw, rule := range map[string]h1.Rule{
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;\x01\r\na\r\n0\r\n\r\n":      h1.RuleChunkExt,
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nA B: c\r\n\r\n": h1.RuleTrailerName,
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nA: c\n\r\n":     h1.RuleBareLF,
	} {
		req, err := h1.ReadRequest(bufio.NewReader(strings.NewReader(raw)), h1.Limits{})
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		_, err = io.ReadAll(req.Body)
		var he *h1.Error
		if !errors.As(err, &he) || he.Rule != rule {
			t.Errorf("%q: body error %v, want rule %s", raw, err, rule)
		}
	}
}

// Pipelined requests: each body read to its end leaves the reader at the
// next request, chunked trailers land in req.Trailer.
func TestPipelining(t *testing.T) {
	raw := "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /b HTTP/1.1\r\nHost: h\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n2;x=\"y\"\r\nde\r\n1\r\nf\r\n0\r\nX-Sum: 3\r\n\r\n" +
		"GET /c?q HTTP/1.1\r\nhost: h\r\nuser-agent: t\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(raw))
	var got []string
	for {
		req, err := h1.ReadRequest(br, h1.Limits{})
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, req.Method+" "+req.URL.String()+" "+req.Host+" "+string(body)+" "+req.Trailer.Get("X-Sum")+" "+req.Header.Get("User-Agent"))
	}
	want := []string{"POST /a h abc  ", "POST /b h def 3 ", "GET /c?q h   t"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// A typical browser GET head (Chrome's, 502 bytes).
const browserGET = "GET /static/app.js?v=3 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"Connection: keep-alive\r\n" +
	"sec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n" +
	"sec-ch-ua-mobile: ?0\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n" +
	"sec-ch-ua-platform: \"Linux\"\r\n" +
	"Accept: */*\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Referer: https://www.example.com/\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"\r\n"

const curlGET = "GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"

func benchHeads(b *testing.B, head string, read func(*bufio.Reader) (*http.Request, error)) {
	// Many copies of the head back to back, like a keep-alive connection.
	const n = 64
	raw := []byte(strings.Repeat(head, n))
	src := bytes.NewReader(raw)
	br := bufio.NewReader(src)
	b.SetBytes(int64(len(head)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%n == 0 {
			src.Reset(raw)
			br.Reset(src)
		}
		req, err := read(br)
		if err != nil {
			b.Fatal(err)
		}
		_ = req.Body.Close()
	}
}

func BenchmarkReadRequest(b *testing.B) {
	for _, c := range []struct{ name, head string }{{"browser", browserGET}, {"curl", curlGET}} {
		b.Run(c.name+"/h1", func(b *testing.B) {
			benchHeads(b, c.head, func(br *bufio.Reader) (*http.Request, error) { return h1.ReadRequest(br, h1.Limits{}) })
		})
		b.Run(c.name+"/nethttp", func(b *testing.B) {
			benchHeads(b, c.head, http.ReadRequest)
		})
	}
}
