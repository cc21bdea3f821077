package config

import "strconv"

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
