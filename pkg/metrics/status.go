package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// The metrics read from the status at scrape time.
var (
	descConnections = prometheus.NewDesc(namespace+"_open_connections",
		"Open proxied connections of a release: plain HTTP requests in flight (kind=\"http\") and upgraded connections (kind=\"websocket\").",
		[]string{labelRelease, "kind"}, nil)
	descReleaseInfo = prometheus.NewDesc(namespace+"_release_info",
		"Always 1 for each retained release; the labels carry its revision and state (starting, active, draining, stopped, failed).",
		[]string{labelRelease, "revision", "state"}, nil)
	descHeld = prometheus.NewDesc(namespace+"_held_requests",
		"Requests waiting for a release to serve (proxy.holdTimeoutMs).", nil, nil)
	descHoldRejected = prometheus.NewDesc(namespace+"_hold_rejected_total",
		"Requests the hold answered 503 because no release served in time or too many waited.", nil, nil)
	descRestarts = prometheus.NewDesc(namespace+"_process_restarts_total",
		"Restarts of a managed process in its current run (crash and memory restarts).",
		[]string{labelRelease, "process", "group"}, nil)
	descMemoryRestarts = prometheus.NewDesc(namespace+"_process_memory_restarts_total",
		"Restarts of a managed process because it exceeded memory.limitBytes.",
		[]string{labelRelease, "process", "group"}, nil)
	descState = prometheus.NewDesc(namespace+"_process_state",
		"1 for the state a managed process is in, 0 for the others.",
		[]string{labelRelease, "process", "group", "state"}, nil)
	descRSS = prometheus.NewDesc(namespace+"_process_resident_memory_bytes",
		"Resident memory of a managed process's whole process group, as memory supervision last sampled it (absent when not sampled).",
		[]string{labelRelease, "process", "group"}, nil)
	descOrphans = prometheus.NewDesc(namespace+"_orphan_processes",
		"Processes of an earlier daemon that still run (rollbridgectl recover).", nil, nil)
)

// processStates are the states rollbridge_process_state enumerates.
var processStates = []string{"starting", "running", "stopping", "stopped", "failed"}

// statusCollector turns one status snapshot per scrape into metrics.
type statusCollector struct{ m *Metrics }

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descReleaseInfo, descHeld, descHoldRejected,
		descRestarts, descMemoryRestarts, descState, descRSS, descOrphans} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	mark := c.m.mark()
	s := c.m.status()
	listed := make(map[string]bool, len(s.Releases))
	for _, r := range s.Releases {
		listed[r.ReleaseID] = true
		ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(r.Connections.HTTP), r.ReleaseID, "http")
		ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(r.Connections.WebSocket), r.ReleaseID, "websocket")
		ch <- prometheus.MustNewConstMetric(descReleaseInfo, prometheus.GaugeValue, 1, r.ReleaseID, r.Revision, r.State)
		for _, p := range r.Processes {
			collectProcess(ch, r.ReleaseID, "release", p)
		}
	}
	for _, u := range s.Services {
		collectProcess(ch, u.ReleaseID, "service", u.Process)
	}
	for _, u := range s.Singletons {
		collectProcess(ch, u.ReleaseID, "singleton", u.Process)
	}
	ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(s.Proxy.Held))
	ch <- prometheus.MustNewConstMetric(descHoldRejected, prometheus.CounterValue, float64(s.Proxy.HoldGaveUp))
	ch <- prometheus.MustNewConstMetric(descOrphans, prometheus.GaugeValue, float64(len(s.Orphans)))
	c.m.prune(mark, listed)
}

// collectProcess writes one managed process's metrics; group says what
// owns it: "release" (the release's own processes), "service" or
// "singleton" (daemon-wide, labelled with the release whose definition
// runs).
func collectProcess(ch chan<- prometheus.Metric, release, group string, p control.Process) {
	ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(p.Restarts), release, p.ID, group)
	ch <- prometheus.MustNewConstMetric(descMemoryRestarts, prometheus.CounterValue, float64(p.MemoryRestarts), release, p.ID, group)
	for _, st := range processStates {
		v := 0.0
		if p.State == st {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, release, p.ID, group, st)
	}
	if p.RSSBytes > 0 {
		ch <- prometheus.MustNewConstMetric(descRSS, prometheus.GaugeValue, float64(p.RSSBytes), release, p.ID, group)
	}
}
