package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkHop measures what one proxied request costs the proxy alone,
// as the daemon serves it: an http.Server with ClientConns tracking in
// front of the Proxy, keep-alive GET, 100 B answers. The client and the
// app are raw sockets that allocate nothing per request and start no
// goroutine, so allocs/op, B/op and goroutines/op are the proxy's own
// (front server, handler, upstream pool). These counters are
// deterministic, unlike time on a shared machine: they are what issue
// #17's changes are measured by (docs/performance.md).
func BenchmarkHop(b *testing.B) {
	app := rawApp(b, 100)
	p := New(Options{})
	p.Swap(NewBackend("v1", app))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cc := NewClientConns(nil)
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, ConnState: cc.ConnState, ConnContext: cc.ConnContext}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(cc.Listener(ln)) // ends with the Stop below
	}()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = cc.Stop(ctx, false)
		_ = srv.Close()
		<-served
		p.Close()
	})
	addr := ln.Addr().String()
	req := []byte("GET /bytes?n=100 HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n")

	gs := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(gs)
	before := gs[0].Value.Uint64()
	b.SetParallelism(8) // 8 × GOMAXPROCS connections
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReaderSize(c, 4096)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readRawResponse(br); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	metrics.Read(gs)
	b.ReportMetric(float64(gs[0].Value.Uint64()-before)/float64(b.N), "goroutines/op")
}

// rawApp is an app that answers every request head with n bytes, written
// in one write, and allocates nothing per request.
func rawApp(b *testing.B, n int) string {
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(n) +
		"\r\nContent-Type: application/octet-stream\r\nDate: Wed, 02 Dec 2026 18:09:32 GMT\r\n\r\n" + strings.Repeat("x", n))
	return serveConns(b, func(_ int, c net.Conn) func() {
		return func() {
			br := bufio.NewReaderSize(c, 4096)
			for {
				for { // the head: lines up to an empty one; no body (GET)
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) <= 2 {
						break
					}
				}
				if _, err := c.Write(answer); err != nil {
					return
				}
			}
		}
	})
}

// readRawResponse reads one answer with a Content-Length body, without
// allocating.
func readRawResponse(br *bufio.Reader) error {
	status, length := 0, -1
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first {
			if len(line) < 12 {
				return errors.New("short status line")
			}
			status, _ = atoi(line[9:12])
			continue
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && string(k) == "Content-Length" {
			length, _ = atoi(bytes.TrimSpace(v))
		}
	}
	if status != http.StatusOK || length < 0 {
		return errors.New("bad answer: status " + strconv.Itoa(status))
	}
	_, err := br.Discard(length)
	return err
}

func atoi(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(b) > 0
}
