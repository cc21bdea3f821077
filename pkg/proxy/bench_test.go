package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

var small = strings.Repeat("x", 100)

func benchUpstream(b *testing.B) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, small)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

func benchGet(b *testing.B, url string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// BenchmarkDirect is the baseline: client -> app.
func BenchmarkDirect(b *testing.B) { benchGet(b, benchUpstream(b)) }

// BenchmarkProxy is client -> proxy -> app, keep-alive on both hops. The
// difference to BenchmarkDirect is the proxy hop's cost (allocs included).
func BenchmarkProxy(b *testing.B) {
	up := benchUpstream(b)
	p := New(Options{})
	p.Swap(NewBackend("v1", strings.TrimPrefix(up, "http://")))
	srv := httptest.NewServer(p)
	b.Cleanup(func() { srv.Close(); p.Close() })
	benchGet(b, srv.URL)
}

// BenchmarkServeHTTPInProcess measures the handler alone, without sockets
// on the client side: what the proxy adds per request in CPU and allocations.
func BenchmarkServeHTTPInProcess(b *testing.B) {
	up := benchUpstream(b)
	p := New(Options{})
	p.Swap(NewBackend("v1", strings.TrimPrefix(up, "http://")))
	b.Cleanup(p.Close)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "http://front/", nil)
		for pb.Next() {
			w := httptest.NewRecorder()
			p.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
}
