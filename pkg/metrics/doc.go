// Package metrics keeps the daemon's Prometheus metrics and serves them.
//
// Per-request counting is the proxy's Observer (Metrics.Observe): each
// backend gets its release's metric children once, when it is first
// swapped in, so a request costs a few atomic adds and one histogram
// observation and never a label lookup or a lock. Everything the daemon
// already knows — open connections, processes, releases, the hold — is
// read from its status when Prometheus scrapes, so it costs nothing in
// between. Deploy and rollback outcomes are counted by the daemon's
// command handler (Metrics.Command); the health-check wait comes from the
// "release healthy" events (Metrics is an events.Output).
//
// docs/metrics.md lists every metric.
package metrics
