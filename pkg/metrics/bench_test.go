package metrics

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// BenchmarkRequestDone is what metrics add to each proxied request: one
// counter increment and one histogram observation on a release's
// children, from every core at once.
func BenchmarkRequestDone(b *testing.B) {
	m := New(Options{Status: func() control.Status { return status("v1") }})
	o := m.Observe("v1", "127.0.0.1:1")
	req := httptest.NewRequest("GET", "/", nil)
	res := proxy.Result{Status: 200, Duration: 750 * time.Microsecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.RequestDone(req, res)
		}
	})
}
