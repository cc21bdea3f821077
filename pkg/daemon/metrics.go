package daemon

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/accesslog"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/metrics"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// newMetrics returns the daemon's metrics, or nil when the config has none.
// It reads the status through d, which must be complete before the first
// scrape (serving comes later).
func (d *daemon) newMetrics(al *accessLog) *metrics.Metrics {
	if d.cfg.Load().Metrics == nil {
		return nil
	}
	o := metrics.Options{Version: d.version, Status: func() control.Status { return statusResult(d.status()) }}
	if al != nil {
		o.AccessLogDropped = al.Dropped
	}
	return metrics.New(o)
}

// accessLog is the config's access log; nil when off. Its methods accept
// a nil receiver.
type accessLog struct{ *accesslog.Log }

// newAccessLog starts the access log when the config has one: entries go
// to o.AccessLog, else as JSON lines to stdout. The client address is
// found with the proxy's trustedProxies rule, so d.proxy must be set
// before the first request.
func (d *daemon) newAccessLog(cfg *config.Config, o Options) *accessLog {
	a := cfg.AccessLog
	if a == nil {
		return nil
	}
	write := o.AccessLog
	if write == nil {
		w := o.Stdout
		if w == nil {
			w = os.Stdout
		}
		write = accesslog.JSONLines(w)
	}
	return &accessLog{accesslog.New(accesslog.Options{Sample: a.Sample, Slow: a.Slow(), Write: write,
		Client: func(r *http.Request) netip.Addr { return d.proxy.ClientAddr(r) }})}
}

func (a *accessLog) close() {
	if a != nil {
		a.Close()
	}
}

// observers is the proxy's Options.Observe: the metrics' and the access
// log's observers of each backend; nil, which observes nothing and costs
// the request path nothing, when both are off.
func observers(m *metrics.Metrics, al *accessLog) proxy.ObserveFunc {
	switch {
	case m == nil && al == nil:
		return nil
	case al == nil:
		return m.Observe
	case m == nil:
		return al.Observe
	}
	return func(releaseID, addr string) proxy.Observer {
		return both{m.Observe(releaseID, addr), al.Observe(releaseID, addr)}
	}
}

// both reports each request to two observers.
type both [2]proxy.Observer

func (b both) RequestDone(r *http.Request, res proxy.Result) {
	b[0].RequestDone(r, res)
	b[1].RequestDone(r, res)
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
