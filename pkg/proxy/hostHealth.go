package proxy

import (
	"net/http"
	"sync/atomic"
	"time"
)

// hostHealth is the proxy's own answer to a load balancer that asks
// whether this host wants traffic (proxy.hostHealthPath): a fleet of hosts
// behind one balancer is rolled host by host by draining a host (the
// answer turns 503, the balancer stops sending new requests), deploying,
// and undraining it. Requests already routed here are served throughout:
// draining changes the answer to the balancer's check, nothing else.
type hostHealth struct {
	// path is the configured path; nil when none is (the request path then
	// pays one atomic load and no compare).
	path atomic.Pointer[string]
	// drained holds when the host was drained; nil while it is not. One
	// pointer, so that the flag and its time never disagree.
	drained atomic.Pointer[time.Time]
}

// SetHostHealthPath makes the proxy answer requests for path itself,
// whatever the method, before any routing (never held, never forwarded):
// 200 while a release is active and the host is not drained, else 503.
// "" turns it off (the default), and the path goes to the app like any
// other. Safe for concurrent use with requests (a config reload).
func (p *Proxy) SetHostHealthPath(path string) {
	if path == "" {
		p.host.path.Store(nil)
		return
	}
	p.host.path.Store(&path)
}

// SetHostDrained drains the host (true) or undrains it (false) and reports
// whether that changed anything. A drained host answers its health path
// 503 and goes on serving every request that still reaches it.
func (p *Proxy) SetHostDrained(drained bool) (changed bool) {
	if !drained {
		return p.host.drained.Swap(nil) != nil
	}
	now := time.Now()
	return p.host.drained.CompareAndSwap(nil, &now)
}

// RestoreHostDrained drains the host as it was since (a daemon restarted
// while drained, from its state file); a zero since means now. It reports
// whether that changed anything: an earlier drain keeps its time.
func (p *Proxy) RestoreHostDrained(since time.Time) (changed bool) {
	if since.IsZero() {
		since = time.Now()
	}
	return p.host.drained.CompareAndSwap(nil, &since)
}

// HostDrained reports whether the host is drained.
func (p *Proxy) HostDrained() bool { return p.host.drained.Load() != nil }

// HostDrainedSince reports when the host was drained, and whether it is.
func (p *Proxy) HostDrainedSince() (time.Time, bool) {
	if t := p.host.drained.Load(); t != nil {
		return *t, true
	}
	return time.Time{}, false
}

// HostHealthy reports what the health path answers now: true (200) when a
// release is active and the host is not drained. While the proxy holds or
// is paused (no active backend) it is false: a balancer should send its
// traffic where a release serves now.
func (p *Proxy) HostHealthy() bool { return p.host.drained.Load() == nil && p.Active() != nil }

// isHostHealth reports whether r asks for the host health path. It is the
// only cost the feature adds to the request path: one atomic load, and one
// string compare when a path is configured.
func (p *Proxy) isHostHealth(r *http.Request) bool {
	hp := p.host.path.Load()
	return hp != nil && r.URL.Path == *hp
}

// serveHostHealth answers the host health path. The body says why, for a
// person reading the balancer's check log.
func (p *Proxy) serveHostHealth(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case p.host.drained.Load() != nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("host drained\n")) // a balancer that hung up needs no answer
	case p.Active() == nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("no active release\n"))
	default:
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	}
}
