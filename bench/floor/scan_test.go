package floor

import (
	"strings"
	"testing"
)

// TestScannerRefuses: the in-place scanner refuses what a strict parser
// must, on both heads.
func TestScannerRefuses(t *testing.T) {
	for _, h := range []string{
		"GET / HTTP/1.1\r\n\r\n",                                 // no Host on 1.1
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",           // two
		"GET / HTTP/1.2\r\nHost: a\r\n\r\n",                      // version
		"GET  HTTP/1.1\r\nHost: a\r\n\r\n",                       // empty target
		"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",                      // method not a token
		"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",                  // control byte in target
		"GET / HTTP/1.1\r\nHost: a\r\n X: folded\r\n\r\n",        // obs-fold
		"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",                // bare LF
		"GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n",            // name with a space
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",         // NUL in a value
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", // a body is not forwarded
	} {
		var s scanner
		if _, err := s.request([]byte(h), "127.0.0.1"); err == nil {
			t.Errorf("request %q: accepted", h)
		}
	}
	for _, h := range []string{
		"HTTP/1.1 200 OK\r\n\r\n", // no Content-Length
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", // two
		"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\n",
		"HTTP/2.0 200 OK\r\nContent-Length: 1\r\n\r\n",
	} {
		s := scanner{head: []bool{false}}
		if _, _, err := s.answerHead([]byte(h)); err == nil {
			t.Errorf("answer %q: accepted", h)
		}
	}
	var s scanner
	if _, _, err := s.answerHead([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n")); err == nil {
		t.Error("an answer nobody asked for: accepted")
	}
}

// TestScannerRewrites checks the rewritten heads, and that a proxied
// request allocates nothing once the buffers have grown.
func TestScannerRewrites(t *testing.T) {
	req := []byte("GET /a?b HTTP/1.1\r\nhost: example.test\r\nConnection: keep-alive\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n\r\n")
	ans := []byte("HTTP/1.0 200 OK\r\nContent-Length: 3\r\nKeep-Alive: timeout=5\r\nX-A: b\r\n\r\n")
	var s scanner
	out, err := s.request(req, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	want := "GET /a?b HTTP/1.1\r\nhost: example.test\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.test\r\n\r\n"
	if string(out) != want {
		t.Errorf("request head:\n%q\nwant\n%q", out, want)
	}
	head, n, err := s.answerHead(ans)
	if err != nil || n != 3 || string(head) != "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\n" {
		t.Errorf("answer head %q, %d, %v", head, n, err)
	}
	s.answered(append(head, "abc"...))
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := s.request(req, "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		head, _, err := s.answerHead(ans)
		if err != nil {
			t.Fatal(err)
		}
		s.answered(append(head, "abc"...))
	})
	if allocs != 0 {
		t.Errorf("%v allocations per proxied request, want 0", allocs)
	}
	if strings.Contains(string(out), "6.6.6.6") {
		t.Error("the client's own X-Forwarded-For was passed on")
	}
}

// BenchmarkHeads: the per-request head work of loop-h1 (parser) and
// loop-scan (scanner), without the sockets: one request as the suite's
// load generator sends it and the demo app's answer.
func BenchmarkHeads(b *testing.B) {
	req := []byte("GET /bytes?n=100 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n")
	ans := []byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/octet-stream\r\nDate: Thu, 03 Dec 2026 06:52:25 GMT\r\n\r\n")
	for _, r := range []struct {
		name string
		new  func() rewriter
	}{{"h1", func() rewriter { return newParser() }}, {"scan", func() rewriter { return &scanner{} }}} {
		b.Run(r.name, func(b *testing.B) {
			p := r.new()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.request(req, "127.0.0.1"); err != nil {
					b.Fatal(err)
				}
				head, _, err := p.answerHead(ans)
				if err != nil {
					b.Fatal(err)
				}
				p.answered(head)
			}
		})
	}
}
