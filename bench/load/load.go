// Package load is the benchmark suite's HTTP load generator: a fixed number
// of workers send requests for a fixed time (or count), on keep-alive or
// fresh connections, and every latency and every failure is recorded.
package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one load run.
type Config struct {
	URL         string
	Concurrency int
	Duration    time.Duration // used when Requests is 0
	Requests    int64         // total requests; 0 = run for Duration
	KeepAlive   bool          // false: a new TCP connection per request
	Body        []byte        // non-nil: POST this body (uploads)
	Timeout     time.Duration // per request; default 30s
}

// Failure is one failed request.
type Failure struct {
	At     time.Time `json:"at"`
	Status int       `json:"status,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// Result summarises a run. Latencies are in microseconds.
type Result struct {
	Requests  int64         `json:"requests"`
	Failures  int64         `json:"failures"`
	Elapsed   time.Duration `json:"elapsedNs"`
	RPS       float64       `json:"rps"`
	Bytes     int64         `json:"bytes"`
	P50       float64       `json:"p50Us"`
	P90       float64       `json:"p90Us"`
	P99       float64       `json:"p99Us"`
	P999      float64       `json:"p999Us"`
	Max       float64       `json:"maxUs"`
	FirstFail []Failure     `json:"firstFailures,omitempty"` // up to 20, with timestamps
}

// Run sends load until the duration (or request count) is reached or ctx ends.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	method := http.MethodGet
	if cfg.Body != nil {
		method = http.MethodPost
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Requests == 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, cfg.Duration)
		defer c2()
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: cfg.Concurrency,
		DisableKeepAlives:   !cfg.KeepAlive,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: cfg.Timeout}

	var issued, bytesIn, failures atomic.Int64
	var mu sync.Mutex
	var first []Failure
	fail := func(f Failure) {
		failures.Add(1)
		mu.Lock()
		if len(first) < 20 {
			first = append(first, f)
		}
		mu.Unlock()
	}
	lat := make([][]time.Duration, cfg.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			samples := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				if cfg.Requests > 0 && issued.Add(1) > cfg.Requests {
					break
				}
				var body io.Reader
				if cfg.Body != nil {
					body = bytes.NewReader(cfg.Body)
				}
				req, _ := http.NewRequestWithContext(ctx, method, cfg.URL, body) // URL validated by the caller
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() != nil {
						break // the run ended while this request was in flight
					}
					fail(Failure{At: time.Now(), Error: err.Error()})
					continue
				}
				n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
				resp.Body.Close()
				d := time.Since(t0)
				if err != nil && ctx.Err() != nil {
					break
				}
				bytesIn.Add(n)
				if err != nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
					f := Failure{At: time.Now(), Status: resp.StatusCode}
					if err != nil {
						f.Error = err.Error()
					}
					fail(f)
					continue
				}
				samples = append(samples, d)
			}
			lat[w] = samples
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, s := range lat {
		all = append(all, s...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p * float64(len(all)-1))
		return float64(all[i].Nanoseconds()) / 1e3
	}
	ok := int64(len(all))
	r := Result{Requests: ok + failures.Load(), Failures: failures.Load(), Elapsed: elapsed,
		RPS: float64(ok) / elapsed.Seconds(), Bytes: bytesIn.Load(),
		P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), FirstFail: first}
	if len(all) > 0 {
		r.Max = float64(all[len(all)-1].Nanoseconds()) / 1e3
	}
	return r
}

// String is a one-line summary.
func (r Result) String() string {
	return fmt.Sprintf("%d req, %d failed, %.0f req/s, p50 %.0fµs p90 %.0fµs p99 %.0fµs p99.9 %.0fµs max %.0fµs",
		r.Requests, r.Failures, r.RPS, r.P50, r.P90, r.P99, r.P999, r.Max)
}
