package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

func TestNoActiveRelease503(t *testing.T) {
	p, url, log := newProxy(t)
	c := newClient(t)
	if code, body := get(t, c, url+"/"); code != http.StatusServiceUnavailable || body != "No active release\n" {
		t.Errorf("before any Swap: got %d %q, want 503 %q", code, body, "No active release\n")
	}
	_, addr := upstream(t, "A", nil)
	activate(p, "v1", addr)
	if code, body := get(t, c, url+"/"); code != http.StatusOK || body != "A" {
		t.Errorf("with v1 active: got %d %q, want 200 A", code, body)
	}
	if prev := p.Swap(nil); prev == nil || prev.ReleaseID() != "v1" {
		t.Errorf("Swap(nil) returned %v, want v1", prev)
	}
	if p.Active() != nil {
		t.Errorf("Active() = %v after Swap(nil), want nil", p.Active())
	}
	if code, _ := get(t, c, url+"/"); code != http.StatusServiceUnavailable {
		t.Errorf("after Swap(nil): got %d, want 503", code)
	}
	if errs := log.all(); len(errs) != 0 {
		t.Errorf("OnError called for 503s: %q", errs)
	}
}

func TestRefusedUpstream502(t *testing.T) {
	p, url, log := newProxy(t)
	a := activate(p, "v1", closedAddr(t))
	code, body := get(t, newClient(t), url+"/orders?id=7")
	if code != http.StatusBadGateway || body != "Bad gateway\n" {
		t.Errorf("got %d %q, want 502 %q", code, body, "Bad gateway\n")
	}
	wantCounts(t, a, 0, 0)
	errs := log.all()
	if len(errs) != 1 || !strings.HasPrefix(errs[0], "v1: GET /orders: ") || !strings.Contains(errs[0], "refused") {
		t.Errorf("OnError got %q, want one report of v1's refused GET /orders", errs)
	}
}

func TestForwardedHeaders(t *testing.T) {
	type seen struct {
		host string
		h    http.Header
	}
	got := make(chan seen, 1)
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Host, r.Header.Clone()}
	})
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	front := strings.TrimPrefix(url, "http://")
	c := newClient(t)

	for _, tc := range []struct {
		name string
		host string      // the request's Host; "" keeps the front's address
		in   http.Header // what the client (the front end) sends
		want map[string]string
	}{
		{
			name: "filled from this hop",
			want: map[string]string{"Host": front, "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": front},
		},
		{
			name: "behind nginx",
			host: "shop.example",
			in:   http.Header{"X-Forwarded-For": {"203.0.113.9"}, "X-Forwarded-Proto": {"https"}, "X-Real-Ip": {"203.0.113.9"}},
			want: map[string]string{"Host": "shop.example", "X-Forwarded-For": "203.0.113.9, 127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example", "X-Real-Ip": "203.0.113.9"},
		},
		{
			name: "several X-Forwarded-For lines",
			host: "shop.example",
			in:   http.Header{"X-Forwarded-For": {"198.51.100.1", "203.0.113.9"}},
			want: map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 127.0.0.1"},
		},
		{
			name: "front end's X-Forwarded-Host and Forwarded kept",
			host: "internal.example",
			in:   http.Header{"X-Forwarded-Host": {"shop.example"}, "Forwarded": {"for=203.0.113.9;proto=https"}},
			want: map[string]string{"Host": "internal.example", "X-Forwarded-Host": "shop.example", "Forwarded": "for=203.0.113.9;proto=https"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, url+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.in {
				req.Header[k] = v
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close() // empty body
			s := <-got
			for k, want := range tc.want {
				v := strings.Join(s.h[k], " | ")
				if k == "Host" {
					v = s.host
				}
				if v != want {
					t.Errorf("upstream saw %s %q, want %q", k, v, want)
				}
			}
		})
	}
}

func TestForwardedProtoHTTPSOverTLS(t *testing.T) {
	proto := make(chan string, 1)
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) { proto <- r.Header.Get("X-Forwarded-Proto") })
	p := New(Options{})
	activate(p, "v1", addr)
	front := httptest.NewTLSServer(p)
	t.Cleanup(func() { front.Close(); p.Close() })
	c := front.Client()
	t.Cleanup(c.CloseIdleConnections)
	if code, _ := get(t, c, front.URL); code != http.StatusOK {
		t.Fatalf("got %d", code)
	}
	if got := <-proto; got != "https" {
		t.Errorf("X-Forwarded-Proto = %q over TLS, want https", got)
	}
}

func TestQueryPassedVerbatim(t *testing.T) {
	query := make(chan string, 1)
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) { query <- r.URL.RawQuery })
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	// ReverseProxy alone would drop the ";" parameters and the bad escape.
	const raw = "a=1;b=2&c=%zz&d=%2F"
	if code, _ := get(t, newClient(t), url+"/search?"+raw); code != http.StatusOK {
		t.Fatalf("got %d", code)
	}
	if got := <-query; got != raw {
		t.Errorf("upstream query %q, want %q", got, raw)
	}
}

func TestHopByHopHeadersStripped(t *testing.T) {
	seen := make(chan http.Header, 1)
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "app only")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-App", "yes")
	})
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	req, err := http.NewRequest(http.MethodGet, url+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "keep-alive, X-Hop")
	req.Header.Set("X-Hop", "front end only")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Upgrade", "h2c") // without "Connection: upgrade" it is no upgrade
	req.Header.Set("Te", "gzip")
	req.Header.Set("X-End-To-End", "kept")
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close() // empty body
	up := <-seen
	for _, h := range []string{"Connection", "X-Hop", "Proxy-Connection", "Keep-Alive", "Upgrade", "Te"} {
		if v, ok := up[h]; ok {
			t.Errorf("upstream got hop-by-hop %s: %q", h, v)
		}
	}
	if up.Get("X-End-To-End") != "kept" {
		t.Errorf("upstream lost X-End-To-End: %v", up)
	}
	for _, h := range []string{"X-Resp-Hop", "Keep-Alive"} {
		if v, ok := resp.Header[h]; ok {
			t.Errorf("client got hop-by-hop %s: %q", h, v)
		}
	}
	if resp.Header.Get("X-App") != "yes" {
		t.Errorf("client lost X-App: %v", resp.Header)
	}
}

// payload returns size bytes of reproducible noise, so a corrupted or
// reordered copy shows in the checksum.
func payload(size int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{7}), size)
}

func payloadSum(t testing.TB, size int64) [sha256.Size]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, payload(size)); err != nil {
		t.Fatal(err)
	}
	return [sha256.Size]byte(h.Sum(nil))
}

// TestUploadStreams: the app gets the start of a 10 MiB upload while the
// client has not sent the rest yet, so the proxy cannot be buffering it.
func TestUploadStreams(t *testing.T) {
	const size, head = 10 << 20, 1 << 20
	gotHead := make(chan struct{})
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.CopyN(h, r.Body, head); err != nil {
			t.Errorf("upstream reading the first MiB: %v", err)
			return
		}
		close(gotHead)
		n, err := io.Copy(h, r.Body)
		if err != nil {
			t.Errorf("upstream reading the rest: %v", err)
		}
		_, _ = fmt.Fprintf(w, "%d %x", head+n, h.Sum(nil)) // the client checks what arrives
	})
	p, url, _ := newProxy(t)
	a := activate(p, "v1", addr)

	body, send := io.Pipe()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		src := payload(size)
		if _, err := io.CopyN(send, src, head); err != nil {
			send.CloseWithError(err)
			return
		}
		select {
		case <-gotHead:
		case <-time.After(10 * time.Second):
			t.Errorf("the app did not see the first MiB while 9 MiB were unsent: the proxy buffers uploads")
			send.CloseWithError(errors.New("upload not streamed"))
			return
		}
		_, err := io.Copy(send, src)
		send.CloseWithError(err) // nil: EOF for the reader
	}()
	resp, err := newClient(t).Post(url+"/upload", "application/octet-stream", body)
	<-sent
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d %x", size, payloadSum(t, size)); string(got) != want {
		t.Errorf("upstream received %s, want %s", got, want)
	}
	wantCounts(t, a, 0, 0)
}

// TestDownloadStreams: the client gets the start of a 10 MiB response
// while the app has not written the rest yet.
func TestDownloadStreams(t *testing.T) {
	const size, head = 10 << 20, 1 << 20
	gotHead := make(chan struct{})
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(size))
		src := payload(size)
		if _, err := io.CopyN(w, src, head); err != nil {
			t.Errorf("upstream writing the first MiB: %v", err)
			return
		}
		select {
		case <-gotHead:
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Second):
			t.Errorf("the client did not get the first half MiB while 9 MiB were unwritten: the proxy buffers downloads")
			return
		}
		_, _ = io.Copy(w, src) // the client checks what arrives
	})
	p, url, _ := newProxy(t)
	a := activate(p, "v1", addr)
	resp, err := newClient(t).Get(url + "/download")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != size {
		t.Errorf("Content-Length %d, want %d", resp.ContentLength, size)
	}
	h := sha256.New()
	// Some of the first MiB may wait in write buffers until more follows;
	// half of it must have arrived.
	if _, err := io.CopyN(h, resp.Body, head/2); err != nil {
		t.Fatal(err)
	}
	close(gotHead)
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if head/2+n != size || [sha256.Size]byte(h.Sum(nil)) != payloadSum(t, size) {
		t.Errorf("downloaded %d bytes (checksum match: %v), want %d", head/2+n, [sha256.Size]byte(h.Sum(nil)) == payloadSum(t, size), size)
	}
	waitCounts(t, a, 0, 0)
}

func TestServerSentEventsFlushImmediately(t *testing.T) {
	release := make(chan struct{})
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", "28") // even a sized event stream is not held back
		_, _ = io.WriteString(w, "data: first\n\n")
		_ = http.NewResponseController(w).Flush() // a failure shows on the client
		select {
		case <-release: // the handler is still running when the client reads
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: second!\n\n")
	})
	p, url, _ := newProxy(t)
	a := activate(p, "v1", addr)
	resp, err := newClient(t).Get(url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Errorf("first event: %q, %v", line, err)
	}
	wantCounts(t, a, 1, 0) // the stream is a request in flight
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: second!\n\n" {
		t.Errorf("rest of the stream: %q, %v", rest, err)
	}
	waitCounts(t, a, 0, 0)
}

// TestSwapMovesKeepAliveClient: the same client connection, next request,
// new backend.
func TestSwapMovesKeepAliveClient(t *testing.T) {
	_, addrA := upstream(t, "A", nil)
	_, addrB := upstream(t, "B", nil)
	p, url, _ := newProxy(t)
	a := activate(p, "v1", addrA)
	c := newClient(t)
	if _, body := get(t, c, url); body != "A" {
		t.Fatalf("before Swap: got %q, want A", body)
	}
	b := NewBackend("v2", addrB)
	if prev := p.Swap(b); prev != a {
		t.Errorf("Swap returned %v, want v1", prev)
	}
	if p.Active() != b {
		t.Errorf("Active() = %v, want v2", p.Active())
	}
	var reused bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // fully read
	if err != nil || string(body) != "B" {
		t.Errorf("after Swap: got %q, %v, want B", body, err)
	}
	if !reused {
		t.Error("the client opened a new connection; the test needs it to reuse its keep-alive one")
	}
	if err := a.Drain(context.Background()); err != nil {
		t.Errorf("Drain(v1): %v", err)
	}
}

// slowUpstream answers once release is closed, and tells entered about each
// request it holds.
func slowUpstream(t testing.TB) (addr string, entered <-chan struct{}, release chan<- struct{}) {
	t.Helper()
	in := make(chan struct{}, 16)
	rel := make(chan struct{})
	_, addr = upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		in <- struct{}{}
		select {
		case <-rel:
			_, _ = io.WriteString(w, "done")
		case <-r.Context().Done():
		}
	})
	return addr, in, rel
}

func TestInFlightCountAndDrain(t *testing.T) {
	addr, entered, release := slowUpstream(t)
	p, url, _ := newProxy(t)
	a := activate(p, "v1", addr)
	c := newClient(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := c.Get(url)
		if err != nil {
			t.Errorf("slow request: %v", err)
			return
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close() // fully read
		if err != nil || string(b) != "done" {
			t.Errorf("slow request: %q, %v", b, err)
		}
	}()
	<-entered
	wantCounts(t, a, 1, 0)
	p.Swap(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := a.Drain(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with a request in flight: %v, want DeadlineExceeded", err)
	}
	if err != nil && !strings.Contains(err.Error(), "1 requests and 0 websockets still open") {
		t.Errorf("Drain error %q does not say what is open", err)
	}
	wantCounts(t, a, 1, 0)

	// Two waiters, one wake-up: both return.
	drained := make(chan error, 2)
	for range 2 {
		go func() { drained <- a.Drain(context.Background()) }()
	}
	close(release)
	<-done
	for range 2 {
		if err := <-drained; err != nil {
			t.Errorf("Drain: %v", err)
		}
	}
	wantCounts(t, a, 0, 0)
}

func TestDrainIdleBackendReturnsAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := NewBackend("v1", "127.0.0.1:1").Drain(ctx); err != nil {
		t.Errorf("Drain of an idle backend: %v, want nil even with ctx done", err)
	}
}

// TestClientCancelIsQuiet: a client hanging up is no upstream failure,
// whether the request watches it (plain server) or its connection does
// (ClientConns).
func TestClientCancelIsQuiet(t *testing.T) {
	for _, tracked := range []bool{false, true} {
		t.Run(fmt.Sprintf("tracked=%v", tracked), func(t *testing.T) {
			addr, entered, _ := slowUpstream(t)
			p, url, log := newProxyServedBy(t, tracked)
			a := activate(p, "v1", addr)
			ctx, cancel := context.WithCancel(context.Background())
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				resp, err := newClient(t).Do(req)
				if err == nil {
					_ = resp.Body.Close()
				}
				done <- err
			}()
			<-entered
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("client: %v, want context.Canceled", err)
			}
			waitCounts(t, a, 0, 0)
			if errs := log.all(); len(errs) != 0 {
				t.Errorf("OnError called for a client that hung up: %q", errs)
			}
		})
	}
}

// TestUpstreamDiesMidResponse: the client sees a broken response, not a
// clean short one, the count drops, and OnError hears about it.
func TestUpstreamDiesMidResponse(t *testing.T) {
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 4096))
		_ = http.NewResponseController(w).Flush() // the abort follows anyway
		panic(http.ErrAbortHandler)               // net/http drops the connection mid-body
	})
	p, url, log := newProxy(t)
	a := activate(p, "v1", addr)
	resp, err := newClient(t).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err == nil {
		t.Error("the client read a clean end of a response the app broke off")
	}
	waitCounts(t, a, 0, 0)
	if errs := log.all(); len(errs) == 0 || !strings.HasPrefix(errs[0], "v1: ") {
		t.Errorf("OnError got %q, want a v1 report", errs)
	}
}

// load runs HTTP clients against a proxy until stopped and counts every
// answer that is not a 200 from some backend.
type load struct {
	requests, failures atomic.Int64
	stopc              chan struct{}
	wg                 sync.WaitGroup
	mu                 sync.Mutex
	firstErr           error
	bodies             map[string]int
}

func startLoad(t testing.TB, url string, clients int) *load {
	l := &load{stopc: make(chan struct{}), bodies: map[string]int{}}
	for range clients {
		c := newClient(t)
		l.wg.Go(func() {
			for {
				select {
				case <-l.stopc:
					return
				default:
				}
				body, err := l.get(c, url)
				l.requests.Add(1)
				l.mu.Lock()
				if err != nil {
					l.failures.Add(1)
					if l.firstErr == nil {
						l.firstErr = err
					}
				} else {
					l.bodies[body]++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *load) get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %q", resp.StatusCode, b)
	}
	return string(b), nil
}

// waitFor waits until n more requests have completed.
func (l *load) waitFor(t testing.TB, n int64) {
	t.Helper()
	target := l.requests.Load() + n
	testutil.Eventually(t, fmt.Sprintf("%d requests", target), func() bool { return l.requests.Load() >= target })
}

func (l *load) stop(t testing.TB) {
	t.Helper()
	close(l.stopc)
	l.wg.Wait()
	if f := l.failures.Load(); f != 0 {
		t.Errorf("%d of %d requests failed; first: %v", f, l.requests.Load(), l.firstErr)
	}
}

// TestSwapUnderLoad: clients hammer the proxy while backends are swapped,
// and not one request fails.
func TestSwapUnderLoad(t *testing.T) {
	t.Run("alternating between two healthy backends", func(t *testing.T) {
		_, addrA := upstream(t, "A", nil)
		_, addrB := upstream(t, "B", nil)
		p, url, _ := newProxy(t)
		backends := [2]*Backend{NewBackend("a", addrA), NewBackend("b", addrB)}
		p.Swap(backends[0])
		l := startLoad(t, url, 8)
		swaps := 0
		for target := l.requests.Load() + 2000; l.requests.Load() < target; swaps++ {
			p.Swap(backends[swaps%2])
			runtime.Gosched()
		}
		l.stop(t)
		if l.bodies["A"] == 0 || l.bodies["B"] == 0 {
			t.Errorf("answers per backend %v after %d swaps; want both", l.bodies, swaps)
		}
		for _, b := range backends {
			wantCounts(t, b, 0, 0)
		}
	})

	// Each step is a deploy: swap in a new release, drain the old one, stop
	// its process. A request routed to a stopped release would fail.
	t.Run("drain and stop each old release", func(t *testing.T) {
		p, url, _ := newProxy(t)
		srv, addr := upstream(t, "r0", nil)
		p.Swap(NewBackend("r0", addr))
		l := startLoad(t, url, 8)
		var retired []*Backend
		for i := 1; i <= 25; i++ {
			next, addr := upstream(t, fmt.Sprintf("r%d", i), nil)
			prev := p.Swap(NewBackend(fmt.Sprintf("r%d", i), addr))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := prev.Drain(ctx)
			cancel()
			if err != nil {
				t.Fatalf("drain %s: %v", prev.ReleaseID(), err)
			}
			srv.Close() // the old process exits
			srv = next
			retired = append(retired, prev)
			l.waitFor(t, 20)
		}
		l.stop(t)
		for _, b := range retired {
			wantCounts(t, b, 0, 0)
		}
		if len(l.bodies) < 20 {
			t.Errorf("only %d of 26 releases answered: %v", len(l.bodies), l.bodies)
		}
	})
}

// timeoutError is a net.Error that timed out, like a dial timeout.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name      string
		req, kill context.Context
		err       error
		want      int
	}{
		{"connection refused", live, live, fmt.Errorf("dial: %w", refused), http.StatusBadGateway},
		{"reset mid-response", live, live, io.ErrUnexpectedEOF, http.StatusBadGateway},
		{"dial timeout", live, live, &net.OpError{Op: "dial", Err: timeoutError{}}, http.StatusGatewayTimeout},
		{"deadline exceeded", live, live, context.DeadlineExceeded, http.StatusGatewayTimeout},
		{"client went away", gone, live, context.Canceled, statusClientClosed},
		{"client went away during a dial", gone, live, refused, statusClientClosed},
		{"backend force-closed", gone, gone, context.Canceled, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.req, tc.kill, tc.err); got != tc.want {
				t.Errorf("classify(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestIsUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
		want bool
	}{
		{"websocket", http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, true},
		{"token list", http.Header{"Upgrade": {"websocket"}, "Connection": {"keep-alive, upgrade"}}, true},
		{"second Connection line", http.Header{"Upgrade": {"websocket"}, "Connection": {"keep-alive", " UPGRADE "}}, true},
		{"Upgrade without Connection", http.Header{"Upgrade": {"websocket"}}, false},
		{"Connection without Upgrade", http.Header{"Connection": {"upgrade"}}, false},
		{"upgrade as a substring", http.Header{"Upgrade": {"websocket"}, "Connection": {"upgraded"}}, false},
		{"plain", http.Header{"Connection": {"keep-alive"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isUpgrade(tc.h); got != tc.want {
				t.Errorf("isUpgrade(%v) = %v, want %v", tc.h, got, tc.want)
			}
		})
	}
}

func TestBufferPool(t *testing.T) {
	var bp bufferPool
	b := bp.Get()
	if len(b) != copyBufSize {
		t.Fatalf("Get: len %d, want %d", len(b), copyBufSize)
	}
	bp.Put(b[:10])           // ReverseProxy hands back what it got; a short slice is still the whole array
	bp.Put(make([]byte, 16)) // foreign buffers are dropped
	if b := bp.Get(); len(b) != copyBufSize {
		t.Errorf("Get after Put: len %d, want %d", len(b), copyBufSize)
	}
	if raceEnabled {
		return // the race detector makes sync.Pool drop items on purpose
	}
	if n := testing.AllocsPerRun(100, func() { bp.Put(bp.Get()) }); n != 0 {
		t.Errorf("Get+Put allocates %v times, want 0", n)
	}
}
