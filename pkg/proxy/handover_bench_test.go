package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// rawEchoApp upgrades every request to a bare echo of bytes: the cheapest
// app, so a benchmark measures the proxy's copy.
func rawEchoApp(b *testing.B) string {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(conn, brw)
	}))
	b.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func rawUpgrade(b *testing.B, addr string) net.Conn {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"); err != nil {
		b.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		b.Fatalf("upgrade: %v %v", res, err)
	}
	return c
}

// benchProxies are the two copy paths: in-process (two goroutines,
// borrowed buffers) and spliced through pipes parked in an fd store.
func benchProxies(b *testing.B, run func(b *testing.B, proxyAddr string)) {
	for _, tc := range []struct {
		name  string
		store bool
	}{{"inprocess", false}, {"splice", true}} {
		b.Run(tc.name, func(b *testing.B) {
			o := Options{}
			if tc.store {
				o.FDStore = newFDStore(b)
			}
			p := New(o)
			srv := httptest.NewServer(p)
			b.Cleanup(func() { srv.Close(); p.Close(); p.Park() })
			activate(p, "v1", rawEchoApp(b))
			run(b, strings.TrimPrefix(srv.URL, "http://"))
		})
	}
}

// BenchmarkWebSocketThroughput: 64 KiB written and read back per op
// through one upgraded connection (both directions are copied).
func BenchmarkWebSocketThroughput(b *testing.B) {
	benchProxies(b, func(b *testing.B, addr string) {
		c := rawUpgrade(b, addr)
		defer c.Close()
		out, in := make([]byte, 64<<10), make([]byte, 64<<10)
		b.SetBytes(int64(len(out)))
		b.ResetTimer()
		for b.Loop() {
			done := make(chan error, 1)
			go func() { _, err := c.Write(out); done <- err }()
			if _, err := io.ReadFull(c, in); err != nil {
				b.Fatal(err)
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWebSocketIdleMemory reports the Go memory (heap and stacks)
// one idle upgraded connection costs the proxy, in bytes per socket.
func BenchmarkWebSocketIdleMemory(b *testing.B) {
	const n = 200
	benchProxies(b, func(b *testing.B, addr string) {
		var perSocket float64
		for b.Loop() {
			before := goMemory()
			conns := make([]net.Conn, n)
			for i := range conns {
				conns[i] = rawUpgrade(b, addr)
				if _, err := conns[i].Write([]byte("x")); err != nil { // one round trip: the copy has started
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conns[i], make([]byte, 1)); err != nil {
					b.Fatal(err)
				}
			}
			perSocket = float64(goMemory()-before) / n
			for _, c := range conns {
				_ = c.Close()
			}
		}
		b.ReportMetric(perSocket, "B/socket")
	})
}

func goMemory() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
