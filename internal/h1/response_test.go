package h1_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/h1"
)

// compareResponses reads raw as a stream of answers to requests with
// method, with http.ReadResponse and with h1.ReadResponse (each answer's
// body read to its end before the next), and reports the first
// difference: in the head (status, version, fields, length, framing,
// close), the body bytes, the trailer, or where the stream ends. The only
// difference allowed is h1 refusing, with a named rule, an answer
// http.ReadResponse takes.
func compareResponses(raw []byte, method string, bufSize int) error {
	ref := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
	cand := bufio.NewReaderSize(bytes.NewReader(raw), bufSize)
	req := &http.Request{Method: method}
	for i := 0; i < 64; i++ {
		want, werr := http.ReadResponse(ref, req)
		into := http.Header{}
		got, gerr := h1.ReadResponse(cand, method, h1.Limits{MaxHeaderBytes: 1 << 20}, into)
		var he *h1.Error
		if gerr != nil && errors.As(gerr, &he) && he.Rule != "" {
			if len(into) != 0 {
				return fmt.Errorf("answer %d: refused, but its fields were left in into: %v", i, into)
			}
			return nil // stricter, by a named rule
		}
		if (werr == nil) != (gerr == nil) {
			return fmt.Errorf("answer %d: net/http error %v, h1 error %v", i, werr, gerr)
		}
		if werr != nil {
			if len(into) != 0 {
				return fmt.Errorf("answer %d: refused, but its fields were left in into: %v", i, into)
			}
			return nil
		}
		if d := diffHead(want, got); d != "" {
			return fmt.Errorf("answer %d: %s", i, d)
		}
		interim := got.StatusCode/100 == 1 && got.StatusCode != http.StatusSwitchingProtocols
		if !interim && reflect.ValueOf(got.Header).UnsafePointer() != reflect.ValueOf(into).UnsafePointer() {
			return fmt.Errorf("answer %d: the header is not the map passed in", i)
		}
		wb, wberr := io.ReadAll(want.Body)
		gb, gberr := io.ReadAll(got.Body)
		if gberr != nil && errors.As(gberr, &he) && he.Rule != "" {
			return nil
		}
		if !bytes.Equal(wb, gb) {
			return fmt.Errorf("answer %d: body %q, h1 %q", i, wb, gb)
		}
		if (wberr == nil) != (gberr == nil) {
			return fmt.Errorf("answer %d: body error %v, h1 %v", i, wberr, gberr)
		}
		if wberr != nil {
			return nil
		}
		if !reflect.DeepEqual(want.Trailer, got.Trailer) {
			return fmt.Errorf("answer %d: trailer %v, h1 %v", i, want.Trailer, got.Trailer)
		}
		if want.Close || want.StatusCode == http.StatusSwitchingProtocols {
			return nil // the connection ends (or stops being HTTP) here
		}
	}
	return nil
}

func diffHead(want, got *http.Response) string {
	type head struct {
		Status                 string
		StatusCode             int
		Proto                  string
		ProtoMajor, ProtoMinor int
		Header, Trailer        http.Header
		ContentLength          int64
		TransferEncoding       []string
		Close                  bool
		NoBody                 bool
	}
	w := head{want.Status, want.StatusCode, want.Proto, want.ProtoMajor, want.ProtoMinor, want.Header, want.Trailer,
		want.ContentLength, want.TransferEncoding, want.Close, want.Body == http.NoBody}
	g := head{got.Status, got.StatusCode, got.Proto, got.ProtoMajor, got.ProtoMinor, got.Header, got.Trailer,
		got.ContentLength, got.TransferEncoding, got.Close, got.Body == http.NoBody}
	if !reflect.DeepEqual(w, g) {
		return fmt.Sprintf("head\n net/http %+v\n h1       %+v", w, g)
	}
	return ""
}

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\nHTTP/1.1 304 Not Modified\r\nEtag: x\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.0 200 OK\r\n\r\nuntil the end",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nxHTTP/1.0 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\nno length: until close",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 1\n\nx",
	"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 +20 odd\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 2000 OK\r\n\r\n",
	"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/0.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"ICY 200 OK\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nTrailer: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTrailer-Only: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
	"",
}

func FuzzResponseDifferential(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		for _, size := range []int{4096, 16} {
			if err := compareResponses(raw, method, size); err != nil {
				t.Fatalf("%s, %d-byte reader, input %q:\n%v", method, size, raw, err)
			}
		}
	})
}

// TestResponseRules shows each answer-side rule refusing what
// http.ReadResponse takes, and that a refused answer leaves into empty.
func TestResponseRules(t *testing.T) {
	cases := []struct {
		rule h1.Rule
		raw  string
	}{
		{h1.RuleBareLF, "HTTP/1.1 200 OK\nContent-Length: 0\n\n"},
		{h1.RuleObsFold, "HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\n\r\n"},
		{h1.RuleDuplicateCL, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"},
		{h1.RuleCLAndTE, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{h1.RuleTEHTTP10, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{h1.RuleNameSpace, "HTTP/1.1 200 OK\r\nX-Ok: 1\r\nBad Name: x\r\n\r\n"},
		{h1.RuleStatusCode, "HTTP/1.1 +20 odd\r\n\r\n"},
		{h1.RuleStatusCode, "HTTP/1.1 000 zero\r\n\r\n"},
		{h1.RuleCRInLine, "HTTP/1.1 200 O\rK\r\n\r\n"},
		{h1.RuleHeadSize, "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 2000) + "\r\n\r\n"},
	}
	for _, c := range cases {
		rule, raw := c.rule, c.raw
		if _, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil); err != nil {
			t.Errorf("%s: net/http refuses it too (%v): not a stricter rule", rule, err)
		}
		into := http.Header{}
		_, err := h1.ReadResponse(bufio.NewReader(strings.NewReader(raw)), http.MethodGet, h1.Limits{MaxHeaderBytes: 1024}, into)
		var he *h1.Error
		if !errors.As(err, &he) || he.Rule != rule || he.Status != http.StatusBadGateway {
			t.Errorf("%s: got %v", rule, err)
		}
		if len(into) != 0 {
			t.Errorf("%s: into holds %v after the refusal", rule, into)
		}
	}
}

// TestResponseIntoNotEmpty: a map that already holds fields (a proxy's own
// Set-Cookie) is never written to; the answer gets a map of its own.
func TestResponseIntoNotEmpty(t *testing.T) {
	into := http.Header{"Set-Cookie": {"canary=1"}}
	res, err := h1.ReadResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nSet-Cookie: app=2\r\nContent-Length: 0\r\n\r\n")),
		http.MethodGet, h1.Limits{}, into)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(into, http.Header{"Set-Cookie": {"canary=1"}}) || !reflect.DeepEqual(res.Header, http.Header{"Set-Cookie": {"app=2"}, "Content-Length": {"0"}}) {
		t.Fatalf("into %v, answer %v", into, res.Header)
	}
}
