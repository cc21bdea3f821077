package proxy

import (
	"context"
	"fmt"
	"net/http/httputil"
	"sync"
	"sync/atomic"
)

// Backend is one release's upstream (its proxied process at host:port) plus
// its connection accounting. Create it with NewBackend and make it live with
// Proxy.Swap; the Proxy it is first swapped into serves it from then on.
// All methods are safe for concurrent use.
type Backend struct {
	releaseID string
	addr      string

	http atomic.Int64 // in-flight plain HTTP requests
	ws   atomic.Int64 // upgrade requests, from handshake until both sides are closed
	// requests counts every request and upgrade routed here, ever: the
	// status view turns it into a rate.
	requests atomic.Uint64

	// drainers counts the Drain calls waiting. While there are none, a
	// counter reaching zero costs the request path one atomic load and no
	// lock; the active backend hits zero after almost every request under
	// light load.
	drainers atomic.Int32
	mu       sync.Mutex
	idle     chan struct{} // closed and replaced, under mu, when a counter reaches zero while drainers > 0

	// kill ends every upgraded connection of this backend: each one runs
	// under a context that kill's cancellation cancels.
	kill     context.Context
	killFunc context.CancelFunc

	bind    sync.Once              // sets rp on the first Swap
	rp      *httputil.ReverseProxy // read-only once bound
	fast    atomic.Pointer[fastTransport]
	buffers *bufferPool // the Proxy's copy buffers, set with rp
	// handover is the Proxy's, set with rp; nil when upgraded connections
	// are copied in-process.
	handover *handover
	obs      Observer // set with rp (Options.Observe); nil observes nothing
}

// NewBackend returns a backend for the process listening at addr
// ("127.0.0.1:18182"). It serves nothing until passed to Proxy.Swap.
func NewBackend(releaseID, addr string) *Backend {
	kill, cancel := context.WithCancel(context.Background())
	return &Backend{
		releaseID: releaseID,
		addr:      addr,
		idle:      make(chan struct{}),
		kill:      kill,
		killFunc:  cancel,
	}
}

// ReleaseID names the release this backend serves.
func (b *Backend) ReleaseID() string { return b.releaseID }

// Connections returns the plain HTTP requests in flight and the open
// upgraded (WebSocket) connections. An upgrade counts from the moment its
// request arrives until both its client and backend sides are closed; it is
// never counted as HTTP.
func (b *Backend) Connections() (http, websocket int64) {
	return b.http.Load(), b.ws.Load()
}

// Requests returns how many requests (upgrades included) were routed to
// this backend since it was created.
func (b *Backend) Requests() uint64 { return b.requests.Load() }

// Drain waits until the backend has no request in flight and no upgraded
// connection open. It returns nil once both counts are 0, or, if ctx ends
// first, an error wrapping ctx.Err() (errors.Is(err,
// context.DeadlineExceeded) after a drain timeout) with the counts left
// open. It blocks on a channel, not a poll loop. Several callers may wait
// at once.
//
// Call it after the backend was swapped out: no new request reaches a
// backend that is no longer active, so the counts only go down. On the
// active backend Drain returns at the first moment both counts are 0.
// Drain closes nothing itself; CloseConnections does that.
func (b *Backend) Drain(ctx context.Context) error {
	b.drainers.Add(1)
	defer b.drainers.Add(-1)
	for {
		// Take the channel before reading the counts: a counter that reaches
		// 0 after the reads closes this channel, or a newer one after it
		// closed this one, so the wake-up cannot be missed.
		b.mu.Lock()
		idle := b.idle
		b.mu.Unlock()
		h, ws := b.Connections()
		if h == 0 && ws == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			h, ws = b.Connections()
			return fmt.Errorf("drain release %s: %d requests and %d websockets still open: %w", b.releaseID, h, ws, ctx.Err())
		}
	}
}

// Retire tells the backend it will never be active again (its release was
// switched away from, or its instance replaced): its idle keep-alive
// connections to the app are closed now, and the connections of requests
// still in flight are closed as they end instead of being pooled, so the
// app's own graceful stop is not held up by idle connections of the
// proxy. Requests in flight and upgraded connections are untouched. A
// backend that is only paused (its process restarts) must not be retired:
// it would serve again without pooling. Idempotent.
func (b *Backend) Retire() {
	if f := b.fast.Load(); f != nil {
		f.closeIdle()
	}
}

// CloseConnections closes every upgraded connection of this backend, on
// both the client and the backend side, and makes later upgrades through
// it fail with 503. It closes the idle keep-alive connections to the
// process too. Plain HTTP requests in flight are left to finish or to end
// with the process; their connections are closed, not pooled, when they
// end. It is idempotent and does not wait; watch Connections or Drain for
// the count to reach 0.
func (b *Backend) CloseConnections() {
	b.killFunc()
	b.Retire() // keep-alive connections to a retiring process
}

// done ends one request or connection counted in c.
func (b *Backend) done(c *atomic.Int64) {
	if c.Add(-1) == 0 && b.drainers.Load() > 0 {
		b.mu.Lock()
		close(b.idle)
		b.idle = make(chan struct{})
		b.mu.Unlock()
	}
}
