package proxy

import (
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options tune a Proxy. The zero value is ready to use.
type Options struct {
	// DialTimeout bounds connecting to an upstream (default 5s).
	DialTimeout time.Duration
	// MaxIdleConnsPerHost is the keep-alive pool per upstream (default 1024).
	MaxIdleConnsPerHost int
}

// Proxy is an http.Handler forwarding to the active Backend.
type Proxy struct {
	active    atomic.Pointer[Backend]
	transport *http.Transport
	dialer    *net.Dialer
	buffers   *bufferPool
	errors    atomic.Uint64 // upstream failures answered with 502
}

// New returns a Proxy with no active backend (it answers 503).
func New(o Options) *Proxy {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = 1024
	}
	dialer := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	return &Proxy{
		dialer: dialer,
		transport: &http.Transport{
			DialContext:         dialer.DialContext,
			MaxIdleConns:        0, // no global cap; per host below
			MaxIdleConnsPerHost: o.MaxIdleConnsPerHost,
			IdleConnTimeout:     90 * time.Second,
			// A proxy passes encodings through; transparent gzip would
			// change what the client receives and cost CPU.
			DisableCompression:    true,
			ExpectContinueTimeout: time.Second,
			WriteBufferSize:       32 << 10,
			ReadBufferSize:        32 << 10,
		},
		buffers: newBufferPool(),
	}
}

// Swap makes next the active backend (nil: no active release) and returns
// the previous one. Requests already routed keep their backend.
func (p *Proxy) Swap(next *Backend) (prev *Backend) {
	if next != nil && next.rp == nil {
		next.rp = p.reverseProxy(next)
	}
	return p.active.Swap(next)
}

// Active returns the active backend, or nil.
func (p *Proxy) Active() *Backend { return p.active.Load() }

// UpstreamErrors counts requests answered 502 because the upstream failed.
func (p *Proxy) UpstreamErrors() uint64 { return p.errors.Load() }

// Close drops idle upstream connections.
func (p *Proxy) Close() { p.transport.CloseIdleConnections() }

// ServeHTTP routes one request to the active backend.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := p.active.Load()
	if b == nil {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("No active release\n")) // the client may be gone
		return
	}
	if isUpgrade(r.Header) {
		p.serveUpgrade(w, r, b)
		return
	}
	b.serveHTTP(w, r)
}

// reverseProxy builds the backend's ReverseProxy once, so the hot path
// needs no per-request closure or context value to find its target.
func (p *Proxy) reverseProxy(b *Backend) *httputil.ReverseProxy {
	addr := b.addr
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = addr
			pr.Out.Host = pr.In.Host // the app sees the Host the client asked for
			setForwarded(pr.Out.Header, pr.In)
		},
		Transport:    p.transport,
		BufferPool:   p.buffers,
		ErrorHandler: p.errorHandler,
	}
}

// setForwarded adds X-Forwarded-* the way a front end like nginx expects:
// X-Forwarded-For gets the client address appended; X-Forwarded-Proto and
// -Host sent by the front end are kept (rollbridge sits behind it, and an app
// behind TLS termination must still see https), else filled from this hop.
func setForwarded(out http.Header, in *http.Request) {
	clientIP, _, err := net.SplitHostPort(in.RemoteAddr)
	if err == nil {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		out["X-Forwarded-For"] = []string{clientIP}
	}
	if v := in.Header["X-Forwarded-Proto"]; len(v) > 0 {
		out["X-Forwarded-Proto"] = v
	} else if in.TLS != nil {
		out["X-Forwarded-Proto"] = []string{"https"}
	} else {
		out["X-Forwarded-Proto"] = []string{"http"}
	}
	if v := in.Header["X-Forwarded-Host"]; len(v) > 0 {
		out["X-Forwarded-Host"] = v
	} else {
		out["X-Forwarded-Host"] = []string{in.Host}
	}
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away; nobody reads an answer.
		w.WriteHeader(499)
		return
	}
	p.errors.Add(1)
	status := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, syscall.ECONNREFUSED) {
		status = http.StatusGatewayTimeout
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(http.StatusText(status) + "\n")) // the client may be gone
}

// isUpgrade reports a Connection: upgrade request with an Upgrade header.
func isUpgrade(h http.Header) bool {
	if len(h["Upgrade"]) == 0 {
		return false
	}
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// bufferPool lends 32 KiB copy buffers to ReverseProxy.
type bufferPool struct{ pool sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (bp *bufferPool) Get() []byte { return *(bp.pool.Get().(*[]byte)) }

func (bp *bufferPool) Put(b []byte) {
	if cap(b) != 32<<10 {
		return
	}
	b = b[:cap(b)]
	bp.pool.Put(&b)
}
