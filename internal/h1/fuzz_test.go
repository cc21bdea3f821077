package h1_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/h1"
	"github.com/rollbridge/rollbridge-go/internal/h1/h1test"
)

// fuzzMaxHeaderBytes is small so that over-limit heads are small inputs.
const fuzzMaxHeaderBytes = 1024

// parser runs ReadRequest over raw the way a connection loop would: read a
// request, read its body to the end, stop at an error or after a request
// after which net/http closes the connection (h1.KeepAlive).
func parser(raw []byte, maxHeaderBytes, bufSize int) h1test.Transcript {
	var tr h1test.Transcript
	src := bytes.NewReader(raw)
	br := bufio.NewReaderSize(src, bufSize)
	for i := 0; ; i++ {
		// net/http's server, between requests, waits for 4 bytes of the
		// next one and hangs up silently if the client closes first.
		if _, err := br.Peek(4); i > 0 && err != nil {
			return tr
		}
		at := len(raw) - src.Len() - br.Buffered()
		req, err := h1.ReadRequest(br, h1.Limits{MaxHeaderBytes: maxHeaderBytes})
		if err == io.EOF {
			return tr
		}
		var he *h1.Error
		if err != nil {
			if !errors.As(err, &he) {
				panic("ReadRequest returned an untyped error: " + err.Error())
			}
			tr.Status = he.Status
			if he.Rule != "" {
				tr.Rule, tr.RuleAt = string(he.Rule), at
			}
			return tr
		}
		body, berr := io.ReadAll(req.Body)
		tr.Messages = append(tr.Messages, h1test.Record(req, body, berr))
		if berr != nil {
			if errors.As(berr, &he) && he.Rule != "" {
				tr.Rule, tr.RuleAt = string(he.Rule), at
			}
			return tr
		}
		if !h1.KeepAlive(req) {
			return tr
		}
	}
}

// seeds are hand-written inputs for FuzzDifferential and the unit tests
// (issue #17's list); testdata/fuzz/FuzzDifferential holds more.
var seeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /index.html?q=1&r=%20x HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
	// pipelining
	"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nPOST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /e HTTP/1.1\r\nHost: a\r\n\r\n",
	// chunked: extensions, trailers, bad and overflowing sizes, missing CRLF
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;\x00\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTrailer: X-Sum, x-other\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 12\r\nX-Late: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nBad Name: x\r\n\r\n",
	// CL+TE conflicts, duplicate and conflicting Content-Length
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.0\r\n\r\n",
	// Host
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost:\r\n\r\n",
	"GET http://other.example/x HTTP/1.1\r\nHost: a\r\n\r\n",
	// obs-fold, bare LF, NUL and control bytes, bad names
	"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n",
	"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: a\r\nX-A : b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n",
	"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\na\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	// huge headers
	"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 2000) + "\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 6000) + "\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 6000),
	// HTTP/1.0 with and without keep-alive
	"GET / HTTP/1.0\r\n\r\nGET /second HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /second HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	// Expect, Upgrade
	"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
	"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi",
	"POST / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\nContent-Length: 2\r\n\r\nhi",
	"POST / HTTP/1.1\r\nHost: a\r\nExpect: foo, 100-continue\r\nContent-Length: 2\r\n\r\nhi",
	"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	// target forms, methods, versions
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
	"CONNECT /rpc HTTP/1.1\r\n\r\n",
	"get / HTTP/1.1\r\nHost: a\r\n\r\n",
	"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
	"GET / HTTP/0.9\r\n\r\n",
	"GET / HTTP/1.10\r\nHost: a\r\n\r\n",
	"GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a/../b;c?d#e HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET //x/y HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a?b? HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a? HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	"GET /" + strings.Repeat("p", 900) + " HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nx: 2\r\nX: 3\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTrailer: X\r\n\r\n",
	"GET / HTTP/1.1\r\nHo",
	"",
}

// FuzzDifferential is issue #17's safety net: the same bytes go to a real
// net/http Server and to ReadRequest (looped, each body read to its end);
// they must agree on every message (boundaries, method, target, headers,
// body, trailers) and on the error status, except where h1 rejects by one
// of its listed stricter rules at or before the message where it applies.
func FuzzDifferential(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ref := h1test.NetHTTP(raw, fuzzMaxHeaderBytes)
		for _, size := range []int{4096, 16} {
			cand := parser(raw, fuzzMaxHeaderBytes, size)
			if err := h1test.Compare(raw, fuzzMaxHeaderBytes, ref, cand); err != nil {
				t.Fatalf("input %q (bufio size %d): %v", raw, size, err)
			}
		}
	})
}

// Limits sit at sizes the byte-level fuzzer does not reach: each input
// around each boundary goes through the same differential comparison.
func TestDifferentialBoundaries(t *testing.T) {
	const chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	var inputs []string
	for d := -3; d <= 3; d++ {
		// A trailer section of 4096+d bytes, final blank line included.
		field := "X-T: " + strings.Repeat("t", 4096+d-len("X-T: \r\n\r\n")) + "\r\n\r\n"
		inputs = append(inputs, chunked+"1\r\na\r\n0\r\n"+field+"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		// A chunk-size line of 4094+d bytes before its CRLF.
		ext := "1;e=" + strings.Repeat("x", 4094+d-len("1;e="))
		inputs = append(inputs, chunked+ext+"\r\na\r\n0\r\n\r\n")
		// Heads around MaxHeaderBytes and around net/http's MaxHeaderBytes+4096.
		for _, size := range []int{fuzzMaxHeaderBytes + d, fuzzMaxHeaderBytes + 4096 + d} {
			pad := size - len("GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n")
			inputs = append(inputs, "GET / HTTP/1.1\r\nHost: a\r\nX: "+strings.Repeat("x", pad)+"\r\n\r\n")
		}
	}
	// Chunk overhead around net/http's 16 KiB budget: one-byte chunks with
	// extensions that cost 12 bytes over the allowance each (the budget is
	// spent at the 1366th).
	for _, n := range []int{1364, 1365, 1366, 1367, 2000} {
		inputs = append(inputs, chunked+strings.Repeat("1;aaaaaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n", n)+"0\r\n\r\n")
	}
	for _, raw := range inputs {
		ref := h1test.NetHTTP([]byte(raw), fuzzMaxHeaderBytes)
		for _, size := range []int{4096, 16} {
			cand := parser([]byte(raw), fuzzMaxHeaderBytes, size)
			if testing.Verbose() && size == 4096 {
				t.Logf("%d bytes: net/http %d messages (body error %v), status %d; h1 %d messages, status %d, rule %q", len(raw), len(ref.Messages), len(ref.Messages) > 0 && ref.Messages[0].BodyErr, ref.Status, len(cand.Messages), cand.Status, cand.Rule)
			}
			if err := h1test.Compare([]byte(raw), fuzzMaxHeaderBytes, ref, cand); err != nil {
				t.Errorf("input of %d bytes starting %q (bufio size %d): %v", len(raw), raw[:min(len(raw), 120)], size, err)
			}
		}
	}
}
