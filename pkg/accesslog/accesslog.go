package accesslog

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// DefaultQueue is how many entries wait for the writer before new ones
// are dropped, when Options.Queue is 0.
const DefaultQueue = 4096

// maxPath bounds the path written: a request line may be long, and the
// log is no place for megabytes of it.
const maxPath = 2048

// Entry is one request. Path is the URL path without the query string,
// which often carries tokens; Client is the client as the proxy's
// trustedProxies rule finds it, Peer the TCP peer.
type Entry struct {
	Time     time.Time     // when the request arrived
	Method   string        //
	Host     string        // the Host header
	Path     string        // at most 2048 bytes
	Status   int           // what the client got (see proxy.Result)
	Bytes    int64         // body bytes sent to the client
	Duration time.Duration //
	Release  string        // release id
	Upstream string        // host:port of the release's proxied process
	Client   string        // client IP address
	Peer     string        // ip:port of the TCP peer (the front end)
}

// Options configure New.
type Options struct {
	// Sample is the share of requests written, in (0, 1]: 0.1 writes every
	// 10th request. 0 writes none but the slow ones; 1 (or more) all.
	Sample float64
	// Slow, when positive, writes every request that took at least Slow,
	// sampled or not.
	Slow time.Duration
	// Queue bounds the entries waiting for Write; 0 means DefaultQueue.
	Queue int
	// Write writes one entry; it runs on the log's one goroutine, so it
	// may be slow (the queue absorbs bursts) but should not block for ever:
	// Close waits for it. Required.
	Write func(Entry)
	// Client finds a request's client address (proxy.Proxy.ClientAddr);
	// nil means the TCP peer.
	Client func(*http.Request) netip.Addr
}

// Log is an access log. Create it with New and stop it with Close; its
// methods are safe for concurrent use.
type Log struct {
	every   uint64 // write every every-th request; 0: none (only slow ones)
	slow    time.Duration
	client  func(*http.Request) netip.Addr
	queue   chan Entry
	write   func(Entry)
	seen    atomic.Uint64 // requests observed, for sampling
	dropped atomic.Uint64
	written atomic.Uint64

	// stop ends the writer; the queue is never closed, so a request that
	// ends after Close finds it full at worst and drops its entry.
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// New starts the log's writer goroutine.
func New(o Options) *Log {
	q := o.Queue
	if q <= 0 {
		q = DefaultQueue
	}
	l := &Log{slow: o.Slow, client: o.Client, queue: make(chan Entry, q), write: o.Write,
		stop: make(chan struct{}), done: make(chan struct{})}
	switch {
	case o.Sample >= 1:
		l.every = 1
	case o.Sample > 0:
		l.every = uint64(math.Round(1 / o.Sample))
	}
	go l.run()
	return l
}

func (l *Log) run() {
	defer close(l.done)
	for {
		select {
		case e := <-l.queue:
			l.writeOne(e)
		case <-l.stop:
			for {
				select {
				case e := <-l.queue:
					l.writeOne(e)
				default:
					return
				}
			}
		}
	}
}

func (l *Log) writeOne(e Entry) {
	l.write(e)
	l.written.Add(1)
}

// Close stops taking entries, writes those queued and returns once the
// writer is done. Idempotent.
func (l *Log) Close() {
	l.closeOnce.Do(func() { close(l.stop) })
	<-l.done
}

// Dropped counts the entries dropped because the queue was full.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Written counts the entries written.
func (l *Log) Written() uint64 { return l.written.Load() }

// Observe is a proxy.ObserveFunc: the observer it returns queues an entry
// for each request of the backend that sampling or slowness selects.
func (l *Log) Observe(releaseID, addr string) proxy.Observer {
	return &observer{l: l, release: releaseID, upstream: addr}
}

type observer struct {
	l                 *Log
	release, upstream string
}

func (o *observer) RequestDone(r *http.Request, res proxy.Result) {
	l := o.l
	sampled := l.every > 0 && l.seen.Add(1)%l.every == 0
	if !sampled && (l.slow <= 0 || res.Duration < l.slow) {
		return
	}
	path := r.URL.Path
	if len(path) > maxPath {
		path = path[:maxPath]
	}
	var client netip.Addr
	if l.client != nil {
		client = l.client(r)
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr()
	}
	e := Entry{Time: res.Start, Method: r.Method, Host: r.Host, Path: path, Status: res.Status, Bytes: res.Bytes,
		Duration: res.Duration, Release: o.release, Upstream: o.upstream, Peer: r.RemoteAddr}
	if client.IsValid() {
		e.Client = client.String()
	}
	select {
	case l.queue <- e:
	default:
		l.dropped.Add(1)
	}
}

// Message is the entry as one line of text, the journal's MESSAGE:
// `GET example.com/path 200 512B 1.2ms release=v2`.
func (e Entry) Message() string {
	return e.Method + " " + e.Host + e.Path + " " + strconv.Itoa(e.Status) + " " + strconv.FormatInt(e.Bytes, 10) + "B " +
		e.Duration.String() + " release=" + e.Release
}

// Fields are the entry's journal fields, ROLLBRIDGE_* as the daemon's
// other entries have them (SYSLOG_IDENTIFIER and the application are the
// writer's to add).
func (e Entry) Fields() map[string]string {
	return map[string]string{
		"ROLLBRIDGE_ACCESS":      "1",
		"ROLLBRIDGE_METHOD":      e.Method,
		"ROLLBRIDGE_HOST":        e.Host,
		"ROLLBRIDGE_PATH":        e.Path,
		"ROLLBRIDGE_STATUS":      strconv.Itoa(e.Status),
		"ROLLBRIDGE_BYTES":       strconv.FormatInt(e.Bytes, 10),
		"ROLLBRIDGE_DURATION_US": strconv.FormatInt(e.Duration.Microseconds(), 10),
		"ROLLBRIDGE_RELEASE_ID":  e.Release,
		"ROLLBRIDGE_UPSTREAM":    e.Upstream,
		"ROLLBRIDGE_CLIENT":      e.Client,
		"ROLLBRIDGE_PEER":        e.Peer,
	}
}

// jsonEntry is an Entry's JSON line: the event log's time layout and
// camelCase names, the duration in milliseconds.
type jsonEntry struct {
	At         string  `json:"at"`
	Type       string  `json:"type"`
	Method     string  `json:"method"`
	Host       string  `json:"host"`
	Path       string  `json:"path"`
	Status     int     `json:"status"`
	Bytes      int64   `json:"bytes"`
	DurationMs float64 `json:"durationMs"`
	ReleaseID  string  `json:"releaseId"`
	Upstream   string  `json:"upstream"`
	Client     string  `json:"client"`
	Peer       string  `json:"peer"`
}

// timeLayout is events.TimeLayout (UTC, milliseconds).
const timeLayout = "2006-01-02T15:04:05.000Z"

// JSONLines returns a Write that writes each entry as one JSON object
// per line to w, {"type":"access",...} so it stands apart from the
// event lines beside it. Errors are dropped: the log must not stop the
// proxy.
func JSONLines(w io.Writer) func(Entry) {
	enc := json.NewEncoder(w)
	return func(e Entry) {
		_ = enc.Encode(jsonEntry{At: e.Time.UTC().Format(timeLayout), Type: "access", Method: e.Method, Host: e.Host, Path: e.Path,
			Status: e.Status, Bytes: e.Bytes, DurationMs: float64(e.Duration.Microseconds()) / 1000, ReleaseID: e.Release,
			Upstream: e.Upstream, Client: e.Client, Peer: e.Peer})
	}
}
