package config

import (
	"strconv"
	"time"
)

// DefaultMetricsHost is where the metrics listener binds when metrics.host
// is left out: loopback, since the metrics name releases and processes.
const DefaultMetricsHost = "127.0.0.1"

// Metrics (extension) configures the Prometheus listener, which serves
// GET /metrics. Leaving the section out turns metrics off: no listener,
// and the proxy counts nothing beyond what status reports. The daemon binds
// the address at start (or takes the socket systemd passed it, named
// "metrics"), so a change takes a restart.
type Metrics struct {
	Host string `json:"host" reload:"restart"`
	// Port 0 binds an ephemeral port (tests, local experiments); a systemd
	// socket needs a fixed one.
	Port int `json:"port" reload:"restart"`
}

// MetricsAddr is host:port of the metrics listener, or "" when metrics
// are off.
func (c *Config) MetricsAddr() string {
	if c.Metrics == nil {
		return ""
	}
	return joinHostPort(c.Metrics.Host, c.Metrics.Port)
}

func decodeMetrics(c *collector, top obj, cfg *Config) {
	if !top.has("metrics") {
		return
	}
	o, ok := c.object("metrics", top.m["metrics"], fieldsOf[Metrics](), "Set metrics to an object such as {host: '127.0.0.1', port: 9182}, or remove it.")
	if !ok {
		return
	}
	m := &Metrics{Host: DefaultMetricsHost}
	if h, ok := o.nonEmptyStr("host", "Set metrics.host to an interface address such as '127.0.0.1'."); ok {
		m.Host = h
	}
	if !o.has("port") {
		c.add("metrics.port", "Set metrics.port to the port Prometheus scrapes, e.g. 9182.", "is required")
	} else if n, ok := o.integer("port", 0, "a port number between 0 and 65535", "Set metrics.port to the port Prometheus scrapes, e.g. 9182."); ok {
		if n > 65535 {
			c.add("metrics.port", "Set metrics.port to a port number between 1 and 65535.", "%d is not a port number", n)
		} else {
			m.Port = int(n)
		}
	}
	cfg.Metrics = m
}

// metricsConflict reports a metrics address equal to the proxy's: both
// could not be bound, and the daemon would fail at start.
func metricsConflict(c *collector, cfg *Config) {
	m := cfg.Metrics
	if m == nil || m.Port == 0 || m.Port != cfg.Proxy.Port || m.Host != cfg.Proxy.Host {
		return
	}
	c.add("metrics.port", "Give metrics a port of its own, e.g. "+strconv.Itoa(m.Port+1000)+".", "is the proxy's address %s", cfg.ProxyAddr())
}

// AccessLog (extension, default off) writes one entry per proxied request
// (see pkg/accesslog): to the journal under systemd, else as JSON lines on
// stdout beside the events. The daemon sets it up at start, so a change
// takes a restart.
type AccessLog struct {
	// Sample is the share of requests written, 0 to 1 (default 1: all);
	// 0.1 writes every 10th.
	Sample float64 `json:"sample" reload:"restart"`
	// SlowMs, when above 0, writes every request that took at least this
	// long, sampled or not: sample: 0, slowMs: 500 logs only slow ones.
	SlowMs int64 `json:"slowMs" reload:"restart"`
}

// Slow is SlowMs as a duration; 0 when off.
func (a AccessLog) Slow() time.Duration { return time.Duration(a.SlowMs) * time.Millisecond }

func decodeAccessLog(c *collector, top obj, cfg *Config) {
	if !top.has("accessLog") {
		return
	}
	o, ok := c.object("accessLog", top.m["accessLog"], fieldsOf[AccessLog](), "Set accessLog to an object such as {sample: 1, slowMs: 500}, or remove it.")
	if !ok {
		return
	}
	a := &AccessLog{Sample: 1}
	if o.has("sample") {
		const fix = "Set accessLog.sample to a number from 0 to 1, e.g. 0.1 to write every 10th request."
		if f, _, ok := o.number("sample"); !ok || f < 0 || f > 1 {
			c.add("accessLog.sample", fix, "must be a number from 0 to 1, got %s", describe(o.m["sample"]))
		} else {
			a.Sample = f
		}
	}
	if v, ok := o.ms("slowMs", false); ok {
		a.SlowMs = v
	}
	if a.Sample == 0 && a.SlowMs == 0 && !c.failedAt("accessLog") {
		c.add("accessLog", "Set accessLog.sample above 0, or accessLog.slowMs to the duration from which requests are written, or remove accessLog.",
			"sample: 0 without slowMs writes nothing")
	}
	cfg.AccessLog = a
}
