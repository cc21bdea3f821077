package accesslog

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// BenchmarkRequestDone is what the access log adds to a request's own
// goroutine (the writer's work is not in it): every request queued
// (sample 1), or every 100th.
func BenchmarkRequestDone(b *testing.B) {
	for _, tc := range []struct {
		name   string
		sample float64
	}{{"sample=1", 1}, {"sample=0.01", 0.01}} {
		b.Run(tc.name, func(b *testing.B) {
			l := New(Options{Sample: tc.sample, Write: func(Entry) {}})
			defer l.Close()
			o := l.Observe("v1", "127.0.0.1:1")
			req := httptest.NewRequest("GET", "/some/path", nil)
			res := proxy.Result{Status: 200, Bytes: 100, Start: time.Now(), Duration: 750 * time.Microsecond}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					o.RequestDone(req, res)
				}
			})
		})
	}
}
