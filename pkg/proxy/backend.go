package proxy

import (
	"context"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
)

// Backend is one release's upstream plus its connection accounting. Create
// it with NewBackend; a Backend is safe for concurrent use.
type Backend struct {
	releaseID string
	addr      string // host:port of the proxied process
	rp        *httputil.ReverseProxy

	http atomic.Int64 // in-flight HTTP requests
	ws   atomic.Int64 // open upgraded connections

	// draining makes decrements signal zero; the active backend skips that.
	draining atomic.Bool
	zero     chan struct{} // capacity 1: "a counter reached 0"

	kill     context.Context // cancelled by CloseConnections
	killFunc context.CancelFunc
}

// NewBackend returns a backend for the process at addr ("127.0.0.1:18182").
// It is not used until passed to Proxy.Swap.
func NewBackend(releaseID, addr string) *Backend {
	kill, cancel := context.WithCancel(context.Background())
	return &Backend{releaseID: releaseID, addr: addr, zero: make(chan struct{}, 1), kill: kill, killFunc: cancel}
}

// ReleaseID names the release this backend serves.
func (b *Backend) ReleaseID() string { return b.releaseID }

// Addr is the upstream host:port.
func (b *Backend) Addr() string { return b.addr }

// Connections returns the in-flight HTTP requests and open upgraded
// (WebSocket) connections.
func (b *Backend) Connections() (http, websocket int64) {
	return b.http.Load(), b.ws.Load()
}

func (b *Backend) done(c *atomic.Int64) {
	if c.Add(-1) == 0 && b.draining.Load() {
		select {
		case b.zero <- struct{}{}:
		default: // a signal is already pending
		}
	}
}

// Drain waits until the backend has no in-flight request and no open
// upgraded connection, or ctx ends (then it returns ctx.Err()). New
// requests may still arrive on pinned connections meanwhile; call it after
// the backend was swapped out. One Drain at a time.
func (b *Backend) Drain(ctx context.Context) error {
	b.draining.Store(true)
	for {
		if b.http.Load() == 0 && b.ws.Load() == 0 {
			return nil
		}
		select {
		case <-b.zero:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CloseConnections closes every upgraded connection of this backend on
// both sides, and makes any later upgrade through it fail at once. Plain
// HTTP requests in flight are cut when their upstream goes away.
func (b *Backend) CloseConnections() { b.killFunc() }

// serveHTTP forwards a plain request and counts it while in flight.
func (b *Backend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	b.http.Add(1)
	defer b.done(&b.http)
	b.rp.ServeHTTP(w, r)
}
