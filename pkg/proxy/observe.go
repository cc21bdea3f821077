package proxy

import (
	"net/http"
	"sync"
	"time"
)

// Observer hears about every plain HTTP request a Backend finished — the
// metrics and the access log are observers. Upgrades (WebSockets) are not
// reported: their lifetime is no request latency; Backend.Connections
// counts them.
//
// RequestDone runs on the request's goroutine after the answer was
// written (or the client or upstream failed), possibly for many requests
// at once, so it must be quick, safe for concurrent use, and must not
// keep r or write to it. It must not block: a slow observer slows every
// request.
type Observer interface {
	RequestDone(r *http.Request, res Result)
}

// Result is what became of one request.
type Result struct {
	// Status is the status sent to the client: the app's, or the proxy's
	// own (502, 503, 504; 499 when the client went away first). An answer
	// cut off midway (the upstream broke the body) keeps the status
	// already sent.
	Status   int
	Bytes    int64         // body bytes written to the client
	Start    time.Time     // when the proxy began forwarding
	Duration time.Duration // from Start until the answer was written
}

// ResultObserver is an Observer that reads nothing of the request (the
// metrics): the event loop (loop.go) reports its requests to it with a
// nil request, so such an observer does not take requests off the loop.
// An Observer that reads the request (the access log) does.
type ResultObserver interface {
	Observer
	ResultOnly()
}

// ObserveFunc gives each backend its Observer; see Options.Observe.
type ObserveFunc func(releaseID, addr string) Observer

// serveObserved forwards r like serveHTTP and reports it to b.obs.
func (b *Backend) serveObserved(w http.ResponseWriter, r *http.Request) {
	b.observed(w, r, func(w http.ResponseWriter) { b.serveHTTP(w, r) })
}

// observed runs serve with a writer that notes the answer, and reports r
// to b.obs after it.
func (b *Backend) observed(w http.ResponseWriter, r *http.Request, serve func(http.ResponseWriter)) {
	rec := recorders.Get().(*recorder)
	*rec = recorder{w: w}
	start := time.Now()
	defer func() {
		// Deferred: also when the handler aborts (http.ErrAbortHandler).
		status := rec.status
		if status == 0 {
			status = http.StatusOK // net/http writes 200 for a handler that wrote nothing
		}
		b.obs.RequestDone(r, Result{Status: status, Bytes: rec.bytes, Start: start, Duration: time.Since(start)})
		*rec = recorder{}
		recorders.Put(rec)
	}()
	serve(rec)
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

// recorder notes the status and body size written through it. Unwrap lets
// http.ResponseController reach the connection's own writer (deadlines,
// flushes); Flush is there for the type assertion forward.go makes.
type recorder struct {
	w      http.ResponseWriter
	status int
	bytes  int64
}

func (rw *recorder) Header() http.Header { return rw.w.Header() }

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 && code >= 200 { // 1xx interim answers are not the status
		rw.status = code
	}
	rw.w.WriteHeader(code)
}

func (rw *recorder) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.w.Write(p)
	rw.bytes += int64(n)
	return n, err
}

func (rw *recorder) Flush() {
	if f, ok := rw.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (rw *recorder) Unwrap() http.ResponseWriter { return rw.w }
