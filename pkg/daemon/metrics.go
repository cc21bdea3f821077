package daemon

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/metrics"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// newMetrics returns the daemon's metrics, or nil when the config has none.
// It reads the status through d, which must be complete before the first
// scrape (serveMetrics comes later).
func (d *daemon) newMetrics() *metrics.Metrics {
	if d.cfg.Load().Metrics == nil {
		return nil
	}
	return metrics.New(metrics.Options{Version: d.version, Status: func() control.Status { return statusResult(d.status()) }})
}

// observe is the proxy's Options.Observe: nil, which observes nothing,
// without metrics.
func observe(m *metrics.Metrics) proxy.ObserveFunc {
	if m == nil {
		return nil
	}
	return m.Observe
}

// metricsServer serves GET /metrics on the metrics listener. The zero
// value (metrics off) does nothing.
type metricsServer struct {
	srv *http.Server
	wg  sync.WaitGroup
}

// serve starts serving m on ln; a nil m or ln serves nothing.
func (s *metricsServer) serve(m *metrics.Metrics, ln net.Listener, log events.Sink) {
	if m == nil || ln == nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Emit(events.MetricsStoppedServing, map[string]any{events.KeyError: err.Error()})
		}
	}()
}

// close stops serving (a scrape in progress is cut) and waits for the
// server's goroutine.
func (s *metricsServer) close() {
	if s.srv != nil {
		_ = s.srv.Close()
	}
	s.wg.Wait()
}

// recordCommand counts a deploy or rollback that started at start.
func (h *handler) recordCommand(command string, start time.Time, err error) {
	if h.metrics != nil {
		h.metrics.Command(command, time.Since(start), err)
	}
}
