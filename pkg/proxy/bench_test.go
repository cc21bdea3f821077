package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchUpstream answers 100 bytes, so the numbers are the per-request
// cost, not copying.
func benchUpstream(b *testing.B) string {
	body := strings.Repeat("x", 100)
	_, addr := upstream(b, "", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	})
	return addr
}

// benchGet runs keep-alive GETs against url from GOMAXPROCS goroutines.
func benchGet(b *testing.B, url string) {
	c := newClient(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body) // drained for keep-alive; the status is what is checked
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkDirect is the baseline: client -> app. Its allocations are the
// client's and the app server's.
func BenchmarkDirect(b *testing.B) { benchGet(b, "http://"+benchUpstream(b)) }

// BenchmarkProxy is client -> proxy -> app with keep-alive on both hops.
// Minus BenchmarkDirect, it is what the proxy hop costs: the front
// net/http server, ReverseProxy, the upstream transport, and this package.
func BenchmarkProxy(b *testing.B) {
	p, url, _ := newProxy(b)
	activate(p, "v1", benchUpstream(b))
	benchGet(b, url)
}

// BenchmarkServeHTTPInProcess calls the handler directly, without a client
// or a front server: ReverseProxy, the upstream transport and the app
// server remain.
func BenchmarkServeHTTPInProcess(b *testing.B) {
	p, _, _ := newProxy(b)
	activate(p, "v1", benchUpstream(b))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "http://front/", nil)
		for pb.Next() {
			w := httptest.NewRecorder()
			p.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
}

// BenchmarkRoute is the routing decision alone (load the route, pick and
// count a backend, let it go): without a canary it is one atomic load and
// two adds; a canary adds the cookie parse or the address hash.
func BenchmarkRoute(b *testing.B) {
	for _, tc := range []struct {
		name   string
		canary *Canary
	}{
		{"no canary", nil},
		{"canary cookie", &Canary{Share: 1000, Cookie: "rollbridge_canary"}},
		{"canary address", &Canary{Share: 1000}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := New(Options{})
			p.Swap(NewBackend("v1", "127.0.0.1:1"))
			if tc.canary != nil {
				if _, err := p.SetCanary(NewBackend("v2", "127.0.0.1:2"), *tc.canary); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest(http.MethodGet, "http://front/", nil)
				req.Header.Set("Cookie", "session=abc; rollbridge_canary=v2")
				for pb.Next() {
					be, n, _ := p.acquire(req, false)
					be.done(n)
				}
			})
		})
	}
}

type nopObserver struct{}

func (nopObserver) RequestDone(*http.Request, Result) {}

// BenchmarkProxyObserved is BenchmarkProxy with an Observer that does
// nothing: minus BenchmarkProxy, the cost of the hook itself (the
// response writer wrapper and the clock reads).
func BenchmarkProxyObserved(b *testing.B) {
	p := New(Options{Observe: func(string, string) Observer { return nopObserver{} }})
	srv := httptest.NewServer(p)
	b.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	activate(p, "v1", benchUpstream(b))
	benchGet(b, srv.URL)
}

// BenchmarkProxyPost is BenchmarkProxy for a request with a 100-byte
// body: the ReverseProxy path with the fallback transport.
func BenchmarkProxyPost(b *testing.B) {
	p, url, _ := newProxy(b)
	activate(p, "v1", benchUpstream(b))
	c := newClient(b)
	body := strings.Repeat("y", 100)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Post(url, "text/plain", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body) // drained for keep-alive
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
