package metrics

import (
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

const namespace = "rollbridge"

// Label names. Every label value is bounded: release ids live only as long
// as the release is retained, and paths and clients are never labels.
const (
	labelRelease   = "release"
	labelCodeClass = "code_class" // "2xx" ... "5xx"
	labelCommand   = "command"    // "deploy", "rollback"
	labelResult    = "result"     // "success", "failure"
)

// Options configure New.
type Options struct {
	// Version is the daemon's version, reported by rollbridge_build_info.
	Version string
	// Status returns the daemon's status; it is called once per scrape, on
	// the scraping goroutine. Required.
	Status func() control.Status
	// AccessLogDropped, when set, counts the access log entries dropped
	// (rollbridge_access_log_dropped_total); nil with the access log off.
	AccessLogDropped func() uint64
}

// Metrics is the daemon's metric registry. Create it with New; all methods
// are safe for concurrent use.
type Metrics struct {
	reg    *prometheus.Registry
	status func() control.Status

	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	commands       *prometheus.CounterVec
	commandTime    *prometheus.HistogramVec
	healthWait     prometheus.Histogram

	// releases maps a release id to its request-path children, made at
	// the first Observe for it; sync.Map because UpstreamError reads it on
	// the request path (a failing upstream fails every request) and never
	// waits for a writer there.
	releases sync.Map // string -> *releaseMetrics
	// mu serialises making and deleting children; seq orders them against
	// a scrape's status (see prune).
	mu  sync.Mutex
	seq uint64
}

// New returns Metrics with every metric registered, the Go runtime's and
// the process's included.
func New(o Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), status: o.Status}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "http_requests_total",
		Help: "Plain HTTP requests proxied to a release, by the status class of the answer (WebSocket upgrades are not counted).",
	}, []string{labelRelease, labelCodeClass})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "http_request_duration_seconds",
		Help:    "Time from the proxy receiving a plain HTTP request to the end of its answer, by release and status class.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{labelRelease, labelCodeClass})
	m.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "upstream_errors_total",
		Help: "Failures of a release's app the proxy reported as proxy errors: refused or broken connections, timeouts (502, 504), answers cut off midway.",
	}, []string{labelRelease})
	m.commands = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "deploys_total",
		Help: "Deploy and rollback commands by outcome.",
	}, []string{labelCommand, labelResult})
	m.commandTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "deploy_duration_seconds",
		Help:    "How long deploy and rollback commands took, by outcome.",
		Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
	}, []string{labelCommand, labelResult})
	m.healthWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "health_check_wait_seconds",
		Help:    "How long a starting release's health check waited until the proxied process answered healthy.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	for _, cmd := range []string{control.CmdDeploy, control.CmdRollback} {
		for _, res := range []string{"success", "failure"} {
			m.commands.WithLabelValues(cmd, res) // present at 0 from the start, so rate() sees the first one
		}
	}
	if o.AccessLogDropped != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "access_log_dropped_total",
			Help: "Access log entries dropped because the journal or stdout did not keep up (the queue was full).",
		}, func() float64 { return float64(o.AccessLogDropped()) }))
	}
	m.reg.MustRegister(m.requests, m.duration, m.upstreamErrors, m.commands, m.commandTime, m.healthWait,
		&statusCollector{m: m}, buildInfo(o.Version),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func buildInfo(version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels name the running rollbridged's version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// Handler serves the metrics in Prometheus' text or protobuf format, as
// the scraper asks. A failing collector is reported in the answer, not
// by a 500: the other metrics are still worth having.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Registry is the registry the metrics are in (tests read it back).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// codeClasses are the status classes whose children exist from the start.
var codeClasses = [...]string{2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}

// releaseMetrics are one release's request-path children.
type releaseMetrics struct {
	requests [len(codeClasses)]prometheus.Counter
	duration [len(codeClasses)]prometheus.Observer
	errors   prometheus.Counter
	seq      uint64 // when it was made, against prune's mark
}

// children returns release id's children, making them the first time.
func (m *Metrics) children(id string) *releaseMetrics {
	if rm, ok := m.releases.Load(id); ok {
		return rm.(*releaseMetrics)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if rm, ok := m.releases.Load(id); ok {
		return rm.(*releaseMetrics)
	}
	m.seq++
	rm := &releaseMetrics{errors: m.upstreamErrors.WithLabelValues(id), seq: m.seq}
	for i, class := range codeClasses {
		if class != "" {
			rm.requests[i] = m.requests.WithLabelValues(id, class)
			rm.duration[i] = m.duration.WithLabelValues(id, class)
		}
	}
	m.releases.Store(id, rm)
	return rm
}

// Observe is a proxy.ObserveFunc: the proxy calls it once per backend, and
// the observer it returns counts the backend's requests on children looked
// up here. Backends of one release (a proxied process replaced after a
// crash or a memory restart) share them.
func (m *Metrics) Observe(releaseID, _ string) proxy.Observer {
	return &observer{m: m, id: releaseID, rm: m.children(releaseID)}
}

type observer struct {
	m  *Metrics
	id string
	rm *releaseMetrics
}

// ResultOnly says RequestDone reads nothing of the request, so the proxy's
// event loop reports to it (proxy.ResultObserver).
func (o *observer) ResultOnly() {}

func (o *observer) RequestDone(_ *http.Request, res proxy.Result) {
	i := res.Status / 100
	if i < 0 || i >= len(codeClasses) || codeClasses[i] == "" {
		// Not a status a proxied request ends with; labelled as it is,
		// off the fast path.
		class := strconv.Itoa(i) + "xx"
		o.m.requests.WithLabelValues(o.id, class).Inc()
		o.m.duration.WithLabelValues(o.id, class).Observe(res.Duration.Seconds())
		return
	}
	o.rm.requests[i].Inc()
	o.rm.duration[i].Observe(res.Duration.Seconds())
}

// UpstreamError counts one proxy error of release id (the proxy's OnError).
// It makes no label lookup when the release was observed, which it always
// was when the proxy reports for it.
func (m *Metrics) UpstreamError(releaseID string) {
	if releaseID == "" {
		return // the hold's 503s: rollbridge_hold_rejected_total counts them
	}
	m.children(releaseID).errors.Inc()
}

// Command records the outcome of a deploy or rollback (command is
// control.CmdDeploy or control.CmdRollback) that took d.
func (m *Metrics) Command(command string, d time.Duration, err error) {
	res := "success"
	if err != nil {
		res = "failure"
	}
	m.commands.WithLabelValues(command, res).Inc()
	m.commandTime.WithLabelValues(command, res).Observe(d.Seconds())
}

// Write is an events.Output: it reads the health-check wait from each
// "release healthy" event.
func (m *Metrics) Write(e events.Event) {
	if e.Message != events.ReleaseHealthy {
		return
	}
	if ms, ok := number(e.Data["waitedMs"]); ok {
		m.healthWait.Observe(ms / 1000)
	}
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// prune deletes the request-path series of releases the status no longer
// lists (pruned by retention). Only children made before the status was
// taken (seq <= mark) may go: a release deployed since is simply not in
// that status yet.
func (m *Metrics) prune(mark uint64, listed map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releases.Range(func(k, v any) bool {
		id, rm := k.(string), v.(*releaseMetrics)
		if rm.seq > mark || listed[id] {
			return true
		}
		l := prometheus.Labels{labelRelease: id}
		m.requests.DeletePartialMatch(l)
		m.duration.DeletePartialMatch(l)
		m.upstreamErrors.DeletePartialMatch(l)
		m.releases.Delete(id)
		return true
	})
}

// mark returns the sequence number of the newest children.
func (m *Metrics) mark() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seq
}
