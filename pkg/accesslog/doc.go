// Package accesslog writes one structured entry per proxied request, off
// the request path: the proxy's Observer (Log.Observe) hands each entry
// to a bounded queue and returns; one goroutine writes the queue to the
// journal or to JSON lines. When the writer falls behind (a journal that
// does not drain, a blocked stdout) and the queue is full, entries are
// dropped and counted, never waited for: requests do not slow down
// because the log does.
//
// Sampling (every Nth request) and a slow-request threshold (slower
// requests are always written) keep the volume down on busy hosts.
package accesslog
