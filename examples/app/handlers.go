package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// app holds the handlers' shared state.
type app struct {
	opts   options
	logger *log.Logger

	mu      sync.Mutex
	sockets map[*wsConn]struct{}
	wg      sync.WaitGroup // running WebSocket handlers
}

func newApp(opts options, logger *log.Logger) *app {
	if opts.release == "" {
		opts.release = defaultRelease
	}
	if opts.healthStatus == 0 {
		opts.healthStatus = http.StatusOK
	}
	return &app{opts: opts, logger: logger, sockets: make(map[*wsConn]struct{})}
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", a.ping)
	mux.HandleFunc("GET /{$}", a.hello)
	mux.HandleFunc("GET /version", a.version)
	mux.HandleFunc("GET /bytes", a.bytes)
	mux.HandleFunc("POST /upload", a.upload)
	mux.HandleFunc("GET /events", a.events)
	mux.HandleFunc("GET /ws", a.websocket)
	if !a.opts.accessLog {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		mux.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		a.logger.Printf("%s %s %d %dB %s", r.Method, r.URL.RequestURI(), status, rec.bytes, time.Since(start).Round(time.Microsecond))
	})
}

func (a *app) ping(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(a.opts.healthStatus)
	if a.opts.healthStatus == http.StatusOK {
		io.WriteString(w, "ok")
		return
	}
	io.WriteString(w, http.StatusText(a.opts.healthStatus))
}

func (a *app) hello(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "hello from release %s\n", a.opts.release)
}

func (a *app) version(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Release string `json:"release"`
		PID     int    `json:"pid"`
	}{a.opts.release, os.Getpid()})
}

// filler is the content of /bytes responses, written in chunks.
var filler = []byte(strings.Repeat("x", 64<<10))

func (a *app) bytes(w http.ResponseWriter, r *http.Request) {
	n := 0
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > maxBytesBody {
			http.Error(w, fmt.Sprintf("n must be a whole number from 0 to %d", maxBytesBody), http.StatusBadRequest)
			return
		}
		n = v
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	for n > 0 {
		chunk := min(n, len(filler))
		if _, err := w.Write(filler[:chunk]); err != nil {
			return
		}
		n -= chunk
	}
}

func (a *app) upload(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, fmt.Sprintf("reading body after %d bytes: %v", n, err), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "%d\n", n)
}

func (a *app) events(w http.ResponseWriter, r *http.Request) {
	count := defaultEventsCnt
	if s := r.URL.Query().Get("count"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > maxEventCount {
			http.Error(w, fmt.Sprintf("count must be a whole number from 0 to %d", maxEventCount), http.StatusBadRequest)
			return
		}
		count = v
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	ticker := time.NewTicker(eventInterval)
	defer ticker.Stop()
	for i := 1; i <= count; i++ {
		if i > 1 {
			select {
			case <-ticker.C:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "data: tick %d\n\n", i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// recorder notes the status and size of a response for the access log.
// Flush reaches the real writer through Unwrap; Hijack is forwarded so a
// WebSocket upgrade is logged as 101.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}
