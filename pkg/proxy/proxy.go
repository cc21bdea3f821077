package proxy

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Transport tuning used where Options leave a field zero.
const (
	defaultDialTimeout         = 5 * time.Second
	defaultMaxIdleConnsPerHost = 1024
	defaultIdleConnTimeout     = 90 * time.Second
)

// Options tune a Proxy. The zero value is ready to use.
type Options struct {
	// DialTimeout bounds connecting to an upstream; 0 means 5s. Upstreams
	// are local processes, so a slow connect means a wedged one; the client
	// then gets 504.
	DialTimeout time.Duration

	// MaxIdleConnsPerHost is how many keep-alive connections to one
	// upstream stay open between requests; 0 means 1024. Size it for the
	// peak number of concurrent requests, or connections get closed and
	// dialled again under load.
	MaxIdleConnsPerHost int

	// OnError, if set, hears about each request the proxy could not complete
	// because of the upstream: it answered 502/504, or the upstream failed
	// midway through a response already begun. releaseID names the backend.
	// Clients that went away and requests made while no release is active
	// are not reported. It also hears about each idle keep-alive connection
	// discarded because the app sent bytes on it that answer no request (a
	// bug in the app, which the request then routed elsewhere never sees).
	// It runs on the request's goroutine (or the idle sweep's), possibly
	// many at once, so it must be quick and safe for concurrent use. Apart
	// from those discarded connections, it is never called for a request
	// that succeeded (a request the crash hold sent again with success
	// is not reported). While the proxy holds (see Hold and CrashHold), it
	// also hears, with releaseID "" and an error wrapping ErrNotHeld, about
	// each request answered 503 because no backend came in time or too
	// many waited.
	OnError func(releaseID string, err error)

	// TrustedProxies are the front ends (nginx, a load balancer) whose
	// X-Forwarded-For entries ClientAddr believes; see ClientAddr for how
	// the client is found. Empty (the zero value) trusts no one: the client
	// is the peer of the TCP connection. It changes nothing that is sent to
	// the app: X-Forwarded-For always gets the peer appended. New copies
	// the list.
	TrustedProxies []netip.Prefix

	// UpstreamTimeout bounds the wait for the head of the app's answer
	// once a request was sent (504 past it, reported to OnError); 0 waits
	// for ever. Bodies are not bounded. A backend takes the value current
	// when it is first swapped in (see SetUpstreamTimeout).
	UpstreamTimeout time.Duration

	// MaxHeld bounds how many requests may wait at once for a backend
	// while the proxy holds (see Proxy.Hold); a request beyond it is
	// answered 503 with Retry-After at once. 0 means DefaultMaxHeld. Each
	// waiting request costs a goroutine and its client's connection.
	MaxHeld int

	// CrashHold is how long a request that failed on the active backend
	// in a way the app cannot have acted on (its process went down: the
	// connection was refused, or closed before any byte of the answer
	// for a request that may be repeated; crashhold.go has the rule)
	// waits for the backend to serve again, then is sent once more. It
	// waits as a held request does (MaxHeld, HoldRelease, Held), until a
	// Swap brings a backend back. 0 (the zero value) answers such
	// requests 502 at once, as before. See SetCrashHold.
	CrashHold time.Duration

	// HoldRelease bounds how many requests that waited (in a hold or a
	// pause) are forwarded at once when they are released: the others
	// wait for one of them to get the head of its answer, so a long queue
	// reaches a backend that just started a few at a time, not as one
	// stampede. 0 means DefaultHoldRelease.
	HoldRelease int

	// FDStore, when set, is where upgraded connections are parked once
	// their upgrade completes, so they outlive the daemon: each is then
	// copied with splice(2) through pipes stored beside its two sockets
	// (splice.go says why no byte is lost or doubled), and Park leaves
	// them to the next daemon, which takes them back with ParkedConns and
	// Resume. nil copies them in-process, ending with the process.
	FDStore FDStore

	// Observe, when set, is asked once for each backend, at its first
	// Swap, for the Observer of its requests (observe.go); a nil answer
	// observes nothing. nil (the zero value) adds no work per request.
	Observe ObserveFunc
}

// Proxy is an http.Handler that forwards each request to the active
// Backend. Create it with New; it is safe for concurrent use.
type Proxy struct {
	// route is what every request loads, once: the active backend and,
	// while a canary runs, the split (canary.go). nil: no active backend.
	// Writers hold routeMu and store a fresh route; nobody writes into one.
	route     atomic.Pointer[route]
	routeMu   sync.Mutex
	split     *split // the canary, under routeMu; nil when none runs
	transport *http.Transport
	dialer    *net.Dialer
	maxIdle   int
	buffers   *bufferPool
	onError   func(releaseID string, err error)
	// trusted is the TrustedProxies list, masked, IPv4-mapped ones as
	// IPv4. A reload replaces the whole slice; nobody writes into one.
	trusted atomic.Pointer[[]netip.Prefix]
	// upstreamTimeout is Options.UpstreamTimeout, in nanoseconds; read
	// when a backend is bound, never per request.
	upstreamTimeout atomic.Int64

	// The hold (hold.go): the current gate, its writers' lock, and the
	// requests waiting. Only requests that find no backend read them.
	gate    atomic.Pointer[gate]
	gateMu  sync.Mutex
	held    atomic.Int64
	gaveUp  atomic.Int64 // requests the hold answered 503 (timeout or bound), since New
	maxHeld int64
	slots   chan struct{} // one per released request being forwarded (HoldRelease)

	// The crash hold (crashhold.go): the current epoch (replaced, under
	// routeMu, at every change of the route) and how long a request that
	// failed on the active backend waits for it, in nanoseconds. A
	// request reads the epoch once, as its upstream exchange starts.
	epoch     atomic.Pointer[epoch]
	crashHold atomic.Int64

	// mode (mode.go): a pause or maintenance; nil while neither, which
	// costs a request one atomic load. Its writers take gateMu.
	mode atomic.Pointer[mode]

	handover *handover // nil without Options.FDStore
	observe  ObserveFunc

	host hostHealth // the load balancer's health answer (hostHealth.go)

	// loops says an event loop was made for the proxy (loop.go): from
	// then on, for good, a request may arrive with an answer pending from
	// one (handoff.go), even after the loop ended.
	loops atomic.Bool
}

// New returns a Proxy with no active backend: until Swap gives it one, it
// answers every request 503 "No active release", unless Hold makes them
// wait for one.
func New(o Options) *Proxy {
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = defaultMaxIdleConnsPerHost
	}
	if o.MaxHeld <= 0 {
		o.MaxHeld = DefaultMaxHeld
	}
	if o.HoldRelease <= 0 {
		o.HoldRelease = DefaultHoldRelease
	}
	dialer := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	// HTTP/1.1 only: upgrades (WebSocket) cannot cross an HTTP/2 hop, and a
	// local hop gains nothing from multiplexing.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	p := &Proxy{
		transport: &http.Transport{
			// No Proxy func: upstreams are local, so HTTP_PROXY from the
			// daemon's environment must not reroute them.
			DialContext:         dialer.DialContext,
			Protocols:           &protocols,
			MaxIdleConns:        0, // no overall cap; per host below
			MaxIdleConnsPerHost: o.MaxIdleConnsPerHost,
			IdleConnTimeout:     defaultIdleConnTimeout,
			// A proxy passes encodings through untouched; transparent gzip
			// would change what the client receives and cost CPU.
			DisableCompression:    true,
			ExpectContinueTimeout: time.Second,
			// No ResponseHeaderTimeout: long polls are legitimate, and the
			// front end (nginx proxy_read_timeout) owns request timeouts.
		},
		dialer:  dialer,
		maxIdle: o.MaxIdleConnsPerHost,
		buffers: &bufferPool{},
		onError: o.OnError,
		maxHeld: int64(o.MaxHeld),
		slots:   make(chan struct{}, o.HoldRelease),

		handover: newHandover(o.FDStore),
		observe:  o.Observe,
	}
	p.gate.Store(&gate{open: make(chan struct{})})
	p.epoch.Store(&epoch{changed: make(chan struct{})})
	p.SetCrashHold(o.CrashHold)
	p.SetTrustedProxies(o.TrustedProxies)
	p.SetUpstreamTimeout(o.UpstreamTimeout)
	return p
}

// SetUpstreamTimeout changes Options.UpstreamTimeout for the backends
// swapped in for the first time from now on; those already serving keep
// theirs (a reload applies from the next deploy).
func (p *Proxy) SetUpstreamTimeout(d time.Duration) { p.upstreamTimeout.Store(int64(max(d, 0))) }

// SetCrashHold changes Options.CrashHold for the requests that fail from
// now on (a config reload); d <= 0 turns the crash hold off.
func (p *Proxy) SetCrashHold(d time.Duration) { p.crashHold.Store(int64(max(d, 0))) }

// SetTrustedProxies replaces the TrustedProxies list (a config reload); it
// copies ps. Requests already being handled may still use the old list.
func (p *Proxy) SetTrustedProxies(ps []netip.Prefix) {
	t := trustedPrefixes(ps)
	p.trusted.Store(&t)
}

// trustedPrefixes copies ps in the form ClientAddr compares against:
// masked, and "::ffff:10.0.0.0/104" as "10.0.0.0/8", since addresses are
// compared unmapped.
func trustedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			continue // matches nothing
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

// Swap makes next the active backend and returns the previous one (nil if
// there was none). next == nil means no active release. Requests already
// routed keep their backend, and so do open upgraded connections; every
// request that starts after Swap returns goes to next. A Backend is bound
// to the first Proxy it is swapped into. Requests waiting in a hold (see
// Hold) go to next; a hold that Pause started ends.
func (p *Proxy) Swap(next *Backend) (prev *Backend) {
	if next == nil {
		prev = p.setMain(nil, false)
		if g := p.gate.Load(); g.untilSwap {
			p.wake() // ends a Pause: the release is gone for good
		}
		return prev
	}
	p.bindBackend(next)
	prev = p.setMain(next, false)
	p.wake() // after the store: a waiter woken now finds next
	return prev
}

// bindBackend binds b to p at its first Swap or SetCanary.
func (p *Proxy) bindBackend(b *Backend) {
	b.bind.Do(func() {
		b.buffers = p.buffers
		b.rp = p.reverseProxy(b)
		b.handover = p.handover
		if p.observe != nil {
			b.obs = p.observe(b.releaseID, b.addr)
		}
	})
}

// Active returns the active backend, or nil. While a canary runs, it is
// the release that is not the canary.
func (p *Proxy) Active() *Backend {
	if rt := p.route.Load(); rt != nil {
		return rt.main
	}
	return nil
}

// Close closes idle keep-alive connections to upstreams. It does not touch
// requests in flight or upgraded connections (see Backend.CloseConnections),
// and the Proxy keeps working: later requests dial again. Call it once the
// proxy stopped serving. It may be called any number of times.
func (p *Proxy) Close() { p.transport.CloseIdleConnections() }

// ServeHTTP forwards r to the active backend. It takes no locks (only a
// request ending on a backend that a Drain waits for takes one, to wake it).
// With no backend active it answers 503, or waits for one while the proxy
// holds (see Hold). While paused or in maintenance (mode.go), the mode
// decides first.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.loops.Load() {
		if pa := takePending(r); pa != nil {
			p.servePending(w, r, pa) // routed and sent by the event loop already
			return
		}
	}
	if p.isHostHealth(r) {
		p.serveHostHealth(w) // before routing: never held, never forwarded
		return
	}
	if m := p.mode.Load(); m != nil {
		p.serveMode(w, r, m)
		return
	}
	p.serve(w, r)
}

// serve forwards r to the active backend, whatever the mode.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	upgrade := isUpgrade(r.Header)
	b, n, cookie := p.acquire(r, upgrade)
	if b == nil {
		if b, n, cookie = p.await(w, r, upgrade); b == nil {
			return // answered
		}
	}
	if cookie != "" {
		w.Header()["Set-Cookie"] = []string{cookie} // a canary assigned a side to a new client
	}
	defer b.done(n) // also when ReverseProxy aborts with http.ErrAbortHandler
	b.requests.Add(1)
	if upgrade {
		b.serveUpgrade(w, r)
		return
	}
	if b.obs != nil {
		b.serveObserved(w, r)
		return
	}
	b.serveHTTP(w, r)
}

// serveHTTP forwards a plain HTTP request to b.
func (b *Backend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if b.forward(w, r) {
		return
	}
	b.rp.ServeHTTP(w, r)
}

// acquire counts a new request on the backend its route picks and returns
// it with the counter to release, or nil if no release is active. cookie
// is a Set-Cookie value for the answer when a canary runs and the client
// was given a side now, else "".
//
// Loading the route and counting are two steps, so a Swap (or a canary's
// promote or abort) can fall in between, and a Drain started right after
// it could see 0 and let the old process be stopped under this request.
// Checking that the backend is still routed to after counting closes that
// gap: if it still is, any Drain of it starts later (only a backend taken
// out of the route is drained) and sees the count; if not, the count is
// undone and the request is routed again by the route that replaced it.
// A route replaced by one that still holds the backend (a new share) keeps
// the request where it is.
func (p *Proxy) acquire(req *http.Request, upgrade bool) (*Backend, *atomic.Int64, string) {
	rt := p.route.Load()
	for rt != nil {
		b, cookie := rt.main, ""
		if rt.canary != nil {
			b, cookie = rt.pick(p, req)
		}
		n := &b.http
		if upgrade {
			n = &b.ws
		}
		n.Add(1)
		now := p.route.Load()
		if now == rt || now.routes(b) {
			return b, n, cookie
		}
		b.done(n)
		rt = now
	}
	return nil, nil, ""
}

// reverseProxy builds b's ReverseProxy once, at its first Swap, so the
// request path needs no per-request closure or context value to find its
// target.
func (p *Proxy) reverseProxy(b *Backend) *httputil.ReverseProxy {
	var report func(error)
	if p.onError != nil {
		report = func(err error) { p.onError(b.releaseID, err) }
	}
	fast := newFastTransport(b.addr, p.dialer, p.transport, p.maxIdle, defaultIdleConnTimeout, p.buffers, report)
	fast.headTimeout = time.Duration(p.upstreamTimeout.Load())
	fast.proxy, fast.backend = p, b
	b.fast.Store(fast)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = b.addr
			// The one header policy (header.go) decides, not ReverseProxy's
			// own pass: ReverseProxy would re-escape the target, drop query
			// parameters it cannot parse (";", bad escapes) and let a
			// Connection token remove the forwarding record.
			setAppTarget(pr.Out.URL, pr.In)
			pr.Out.Host = pr.In.Host
			setAppHeader(pr.Out.Header, pr.In, "")
		},
		Transport:      fast,
		BufferPool:     p.buffers,
		ModifyResponse: keepBackend,
		ErrorHandler:   func(w http.ResponseWriter, r *http.Request, err error) { p.fail(w, r, b, err) },
		// Without ErrorLog, ReverseProxy prints to the process-wide log
		// package (for example when an upstream dies mid-body); route those
		// lines to OnError instead.
		ErrorLog: log.New(logWriter{p: p, b: b}, "", 0),
	}
	return rp
}

// fail answers a request that could not be forwarded and reports the
// upstream's failures to OnError.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, b *Backend, err error) {
	switch {
	case r.Context().Err() != nil:
	case errors.Is(err, ErrNotHeld):
		p.giveUp(w, r, "No active release", err) // the crash hold waited in vain
		return
	case errors.Is(err, errReleaseGone):
		http.Error(w, "No active release", http.StatusServiceUnavailable)
		return
	}
	status := classify(r.Context(), b.kill, err)
	switch status {
	case statusClientClosed:
		// Nobody reads this answer. Write the status anyway so net/http does
		// not write a 200 for the handler; there is nothing to report.
		w.WriteHeader(status)
		return
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		p.report(b, r, err)
	}
	http.Error(w, statusBody(status), status)
}

// statusClientClosed is nginx's 499: the client closed the request before
// the answer was ready.
const statusClientClosed = 499

// classify maps a forwarding error to the status for the client:
//   - 499 when the client went away (reqCtx ended), so the error is
//     no fault of the upstream;
//   - 503 when CloseConnections killed the backend under an upgrade;
//   - 504 when connecting to or hearing from the upstream timed out;
//   - 502 for everything else: connection refused or reset, a broken
//     response.
func classify(reqCtx, kill context.Context, err error) int {
	switch {
	case kill.Err() != nil && errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	case reqCtx.Err() != nil, errors.Is(err, context.Canceled):
		return statusClientClosed
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// statusBody is the plain-text body of a status the proxy answers itself.
func statusBody(status int) string {
	switch status {
	case http.StatusBadGateway:
		return "Bad gateway"
	case http.StatusGatewayTimeout:
		return "Gateway timeout"
	case http.StatusServiceUnavailable:
		return "Release stopped"
	}
	return http.StatusText(status)
}

func (p *Proxy) report(b *Backend, r *http.Request, err error) {
	if p.onError != nil {
		p.onError(b.releaseID, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err))
	}
}

// logWriter turns a line ReverseProxy logs into an OnError report.
type logWriter struct {
	p *Proxy
	b *Backend
}

func (lw logWriter) Write(line []byte) (int, error) {
	if lw.p.onError != nil {
		lw.p.onError(lw.b.releaseID, errors.New(strings.TrimSpace(string(line))))
	}
	return len(line), nil
}

// copyBufSize matches io.Copy's buffer, which ReverseProxy would otherwise
// allocate afresh for every response body.
const copyBufSize = 32 << 10

// bufferPool lends ReverseProxy its body-copy buffers. It stores array
// pointers so that Put does not allocate a slice header per call.
type bufferPool struct{ pool sync.Pool }

func (bp *bufferPool) Get() []byte {
	if a, ok := bp.pool.Get().(*[copyBufSize]byte); ok {
		return a[:]
	}
	return new([copyBufSize]byte)[:]
}

func (bp *bufferPool) Put(b []byte) {
	if cap(b) < copyBufSize {
		return
	}
	bp.pool.Put((*[copyBufSize]byte)(b[:copyBufSize]))
}
