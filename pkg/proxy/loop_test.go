package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"golang.org/x/sys/unix"
)

// plainLoop is a loop in front of a proxy with one release, r1, whose app
// answers "app".
func plainLoop(t testing.TB) (*Loop, string) {
	t.Helper()
	p := New(Options{})
	_, app := upstream(t, "app", nil)
	activate(p, "r1", app)
	return loopFront(t, p)
}

// loopFront serves p through an event loop the way the daemon does (see
// loopServer) and returns the loop and its address.
func loopFront(t testing.TB, p *Proxy) (*Loop, string) {
	t.Helper()
	f := loopServer(t, p, nil)
	return f.lp, f.addr
}

// exchange sends raw requests on one connection and reads as many
// answers, each with its body.
func exchange(t testing.TB, c net.Conn, br *bufio.Reader, raw string, answers int) []wireHead {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var out []wireHead
	for range answers {
		h, err := readWireHead(br)
		if err != nil {
			t.Fatalf("after %d answers: %v", len(out), err)
		}
		out = append(out, h)
	}
	return out
}

func dialFront(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// The loop serves plain GETs itself, on keep-alive connections, pipelined
// or not, and the app's count ends at zero.
func TestLoopServesPlainGets(t *testing.T) {
	p := New(Options{})
	_, app := upstream(t, "v1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello "+r.URL.RequestURI())
	})
	b := activate(p, "v1", app)
	lp, front := loopFront(t, p)
	c, br := dialFront(t, front)
	for i := range 20 {
		got := exchange(t, c, br, fmt.Sprintf("GET /n/%d HTTP/1.1\r\nHost: a\r\n\r\n", i), 1)[0]
		if got.line != "HTTP/1.1 200 OK" || got.body != fmt.Sprintf("hello /n/%d", i) {
			t.Fatalf("answer %d: %s", i, got)
		}
	}
	got := exchange(t, c, br, "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n", 3)
	for i, want := range []string{"hello /a", "hello /b", "hello /c"} {
		if got[i].body != want {
			t.Fatalf("pipelined answer %d: %s", i, got[i])
		}
	}
	if n := lp.servedCount(); n != 23 {
		t.Fatalf("the loop served %d of 23 requests (handed %d connections off)", n, lp.handedCount())
	}
	waitCounts(t, b, 0, 0)
}

// What the app and the client see through the loop is what they see
// through the net/http path. The head app's answer has a Connection
// field naming a field, so the loop sends the request and hands the
// answer over (pending); the answer app's is one the loop writes itself.
func TestLoopSamePolicy(t *testing.T) {
	requests := []string{
		"GET /x?y=1 HTTP/1.1\r\nHost: app.example:8443\r\nUser-Agent: t\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-proto: https\r\nKeep-Alive: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
	}
	app := newHeadApp(t)
	plain, url, _ := newProxy(t)
	activate(plain, "v1", app.addr)
	viaHTTP := strings.TrimPrefix(url, "http://")
	p := New(Options{})
	activate(p, "v1", app.addr)
	lp, viaLoop := loopFront(t, p)
	for _, req := range requests {
		handed := lp.handedCount()
		want, gotApp := rawExchange(t, viaHTTP, req), <-app.heads
		got, loopApp := rawExchange(t, viaLoop, req), <-app.heads
		if lp.handedCount() != handed+1 || lp.servedCount() != 0 {
			t.Fatalf("%q: handed %d, served %d: the loop was to send it and hand the answer over", req, lp.handedCount(), lp.servedCount())
		}
		comparePaths(t, req, want, got, gotApp, loopApp)
	}

	answers := newAnswerApp(t)
	fast := []byte("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nX-App: 1\r\nContent-Length: 14\r\n\r\n<html>hi</html")
	answers.answer.Store(&fast)
	plain2, url2, _ := newProxy(t)
	activate(plain2, "v1", answers.addr)
	p2 := New(Options{})
	activate(p2, "v1", answers.addr)
	lp2, viaLoop2 := loopFront(t, p2)
	for _, req := range requests {
		served := lp2.servedCount()
		want, got := rawExchange(t, strings.TrimPrefix(url2, "http://"), req), rawExchange(t, viaLoop2, req)
		// The loop serves all four; the two that close the connection
		// end with a FIN after the answer (linger).
		if lp2.servedCount() != served+1 {
			t.Fatalf("%q: served %d → %d (handed %d); the loop is to serve it", req, served, lp2.servedCount(), lp2.handedCount())
		}
		comparePaths(t, req, want, got, wireHead{}, wireHead{})
	}
}

func comparePaths(t *testing.T, req string, want, got, wantApp, gotApp wireHead) {
	t.Helper()
	want.fields, got.fields = withoutDate(want.fields), withoutDate(got.fields)
	if a, b := wantApp.String(), gotApp.String(); a != b {
		t.Errorf("%q: the app saw\n net/http: %s\n loop:     %s", req, a, b)
	}
	if a, b := want.String(), got.String(); a != b {
		t.Errorf("%q: the client got\n net/http: %s\n loop:     %s", req, a, b)
	}
}

// withoutDate blanks the Date value (the clock's, not the path's), keeping
// the line: both paths must write one.
func withoutDate(fields []string) []string {
	out := slices.Clone(fields)
	for i, f := range out {
		if strings.HasPrefix(f, "Date: ") {
			out[i] = "Date: *"
		}
	}
	return out
}

// Everything the loop does not serve goes to the net/http path on the
// same connection, in order: a body, HEAD, an upgrade's refusal, a
// chunked answer, a large answer, an answer without a length.
func TestLoopHandsOff(t *testing.T) {
	p := New(Options{})
	big := strings.Repeat("b", loopMaxBody+1)
	_, app := upstream(t, "v1", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			_, _ = io.WriteString(w, "part one ")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part two")
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			_, _ = io.WriteString(w, big)
		case "/post":
			body, _ := io.ReadAll(r.Body)
			_, _ = fmt.Fprintf(w, "got %q", body)
		default:
			_, _ = io.WriteString(w, "plain "+r.Method)
		}
	})
	b := activate(p, "v1", app)
	lp, front := loopFront(t, p)
	c, br := dialFront(t, front)
	got := exchange(t, c, br, "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	if got[0].body != "plain GET" || lp.servedCount() != 1 {
		t.Fatalf("first answer %s, served %d", got[0], lp.servedCount())
	}
	_, _ = io.WriteString(c, "GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n")
	head, err := readHeadLines(br)
	if err != nil || head[0] != "HTTP/1.1 200 OK" || !slices.Contains(head, "Transfer-Encoding: chunked") {
		t.Fatalf("chunked answer %q: %v", head, err)
	}
	body, err := readChunked(br)
	if err != nil || body != "part one part two" {
		t.Fatalf("chunked body %q: %v", body, err)
	}
	// Back on the loop at the boundary: a POST goes to net/http again,
	// the GET after it to the loop, the large answer to net/http pending.
	got = exchange(t, c, br, "POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 1)
	if got[0].body != `got "abc"` {
		t.Fatalf("POST after the hand-off: %s", got[0])
	}
	// The chunked answer and the POST were two hand-offs in a row, so
	// net/http keeps the connection for one more request (backTo).
	served := lp.servedCount()
	got = exchange(t, c, br, "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	if got[0].body != "plain GET" || lp.servedCount() != served {
		t.Fatalf("first GET after the POST: %s, served %d (was %d): it should have stayed on net/http", got[0], lp.servedCount(), served)
	}
	got = exchange(t, c, br, "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	if got[0].body != "plain GET" || lp.servedCount() != served+1 {
		t.Fatalf("second GET after the POST: %s, served %d (was %d): the connection did not come back to the loop", got[0], lp.servedCount(), served)
	}
	got = exchange(t, c, br, "POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /big HTTP/1.1\r\nHost: a\r\n\r\nHEAD /h HTTP/1.1\r\nHost: a\r\n\r\n", 2)
	if got[0].body != `got "abc"` || got[1].body != big {
		t.Fatalf("pipelined after the hand-offs: %q, %d bytes", got[0].body, len(got[1].body))
	}
	if h, _, err := readHead(br); err != nil || h != "HTTP/1.1 200 OK" {
		t.Fatalf("HEAD: %q %v", h, err)
	}

	// A fresh connection per case the loop gives up at once.
	for _, tc := range []struct{ req, want string }{
		{"POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", `got "hi"`},
		{"GET /big HTTP/1.1\r\nHost: a\r\n\r\n", big},
		{"DELETE /d HTTP/1.1\r\nHost: a\r\n\r\n", "plain DELETE"},
		{"GET /%41 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", "plain GET"},
	} {
		if got := rawExchange(t, front, tc.req); got.body != tc.want {
			t.Errorf("%q: %s", tc.req[:20], got)
		}
	}
	waitCounts(t, b, 0, 0)
}

// readHead reads an answer head without a body (HEAD's) and returns its
// first line.
func readHead(br *bufio.Reader) (string, []string, error) {
	lines, err := readHeadLines(br)
	if len(lines) == 0 {
		return "", nil, err
	}
	return lines[0], lines[1:], err
}

// readHeadLines reads a head's lines, without the blank one.
func readHeadLines(br *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return lines, err
		}
		if line = strings.TrimSuffix(line, "\r\n"); line == "" {
			return lines, nil
		}
		lines = append(lines, line)
	}
}

// readChunked reads a chunked body (no trailers) to its end.
func readChunked(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return sb.String(), err
		}
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "%x", &n); err != nil {
			return sb.String(), err
		}
		if n == 0 {
			_, err := br.ReadString('\n')
			return sb.String(), err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return sb.String(), err
		}
		sb.Write(buf[:n])
	}
}

// An app that is not there: the net/http path answers (502), as without
// the loop; a WebSocket goes through the net/http path too.
func TestLoopAppDownAndUpgrade(t *testing.T) {
	p := New(Options{})
	b := activate(p, "v1", closedAddr(t))
	_, front := loopFront(t, p)
	if got := rawExchange(t, front, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); !strings.Contains(got.line, " 502 ") {
		t.Fatalf("app down: %s", got)
	}
	waitCounts(t, b, 0, 0)

	p2 := New(Options{})
	app := newHeadApp(t)
	activate(p2, "v2", app.addr)
	_, front2 := loopFront(t, p2)
	got := rawExchange(t, front2, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "+wsKey+"\r\nSec-WebSocket-Version: 13\r\n\r\n")
	<-app.heads
	if !strings.Contains(got.line, " 101 ") || got.body != wsHello {
		t.Fatalf("upgrade through the loop: %s", got)
	}
}

// The app's time to answer is bounded as on the net/http path: 504.
func TestLoopUpstreamTimeout(t *testing.T) {
	p := New(Options{UpstreamTimeout: 300 * time.Millisecond})
	release := make(chan struct{})
	_, app := upstream(t, "v1", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	b := activate(p, "v1", app)
	_, front := loopFront(t, p)
	if got := rawExchange(t, front, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); !strings.Contains(got.line, " 504 ") {
		t.Fatalf("slow app: %s", got)
	}
	waitCounts(t, b, 0, 0)
}

// A client that leaves while the app works releases its count, and the
// app connection is closed, not pooled with an answer on its way.
func TestLoopClientLeaves(t *testing.T) {
	p := New(Options{})
	started, release := make(chan struct{}, 1), make(chan struct{})
	_, app := upstream(t, "v1", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "late")
	})
	b := activate(p, "v1", app)
	_, front := loopFront(t, p)
	c, _ := dialFront(t, front)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	waitCounts(t, b, 1, 0)
	c.Close()
	waitCounts(t, b, 0, 0)
	close(release)
}

// A Stop gives idle connections to the net/http path, which goes on
// serving them; new connections are no longer taken by the loop.
func TestLoopStopHandsIdleConnections(t *testing.T) {
	p := New(Options{})
	_, app := upstream(t, "v1", nil)
	activate(p, "v1", app)
	lp, front := loopFront(t, p)
	c, br := dialFront(t, front)
	if got := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1); got[0].body != "v1" {
		t.Fatal(got[0])
	}
	lp.Stop()
	<-lp.Done()
	if got := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1); got[0].body != "v1" || lp.servedCount() != 1 || lp.handedCount() != 1 {
		t.Fatalf("after the stop: %s (served %d, handed %d)", got[0], lp.servedCount(), lp.handedCount())
	}
}

// A deploy under load through the loop: no request fails, each answer
// comes from a release that was active while it ran, and the old release
// drains to zero.
func TestLoopSwapUnderLoad(t *testing.T) {
	p := New(Options{})
	_, app1 := upstream(t, "v1", nil)
	_, app2 := upstream(t, "v2", nil)
	old := activate(p, "v1", app1)
	lp, front := loopFront(t, p)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", front)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
					errs <- err.Error()
					return
				}
				h, err := readWireHead(br)
				if err != nil || h.line != "HTTP/1.1 200 OK" || (h.body != "v1" && h.body != "v2") {
					errs <- fmt.Sprintf("%v %s", err, h)
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	p.Swap(NewBackend("v2", app2))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := old.Drain(ctx); err != nil {
		t.Errorf("drain: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if lp.servedCount() == 0 {
		t.Error("the loop served nothing")
	}
}

// The loop forgets the releases it no longer routes to: what it keeps per
// release (address, pool) does not grow with the deploys ever made.
func TestLoopForgetsOldReleases(t *testing.T) {
	p := New(Options{})
	_, app := upstream(t, "app", nil)
	activate(p, "r0", app)
	lp, front := loopFront(t, p)
	c, br := dialFront(t, front)
	for i := range 10 {
		activate(p, fmt.Sprintf("r%d", i+1), app)
		if got := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1); got[0].body != "app" {
			t.Fatal(got[0])
		}
	}
	time.Sleep(1500 * time.Millisecond) // a sweep
	lp.Stop()
	<-lp.Done() // the loop's maps are ours to read from here
	for i, th := range lp.threads {
		if len(th.addrs) > 1 || len(th.idle) > 1 {
			t.Fatalf("after 10 deploys: thread %d keeps %d addresses and %d pools", i, len(th.addrs), len(th.idle))
		}
	}
	if lp.servedCount() != 10 {
		t.Fatalf("after 10 deploys: served %d", lp.servedCount())
	}
}

// resultCounter is an Observer; with resultOnly it is a ResultObserver,
// as the metrics are.
type resultCounter struct {
	mu      sync.Mutex
	results []Result
	withReq int // calls that had a request
}

func (o *resultCounter) RequestDone(r *http.Request, res Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.results = append(o.results, res)
	if r != nil {
		o.withReq++
	}
}

func (o *resultCounter) counts() (n, withReq int, last Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.results) > 0 {
		last = o.results[len(o.results)-1]
	}
	return len(o.results), o.withReq, last
}

type resultOnly struct{ *resultCounter }

func (resultOnly) ResultOnly() {}

// With an observer that reads only the result (the metrics), the loop
// serves and reports each request, a pending one too (by the net/http
// path); with one that reads the request (the access log), every request
// goes to the net/http path, which reports it.
func TestLoopObservers(t *testing.T) {
	_, app := upstream(t, "v1", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			_, _ = io.WriteString(w, "a")
			w.(http.Flusher).Flush()
		}
		_, _ = io.WriteString(w, "hello")
	})
	for _, tc := range []struct {
		name      string
		obs       Observer
		loopServe bool
	}{
		{"metrics-like", resultOnly{&resultCounter{}}, true},
		{"access-log-like", &resultCounter{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Options{Observe: func(string, string) Observer { return tc.obs }})
			activate(p, "v1", app)
			lp, front := loopFront(t, p)
			c, br := dialFront(t, front)
			for range 5 {
				if got := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1); got[0].body != "hello" {
					t.Fatal(got[0])
				}
			}
			var rc *resultCounter
			switch o := tc.obs.(type) {
			case resultOnly:
				rc = o.resultCounter
			case *resultCounter:
				rc = o
			}
			// Reported after the answer went out, so maybe after the client read it.
			testutil.Eventually(t, "5 reports", func() bool { n, _, _ := rc.counts(); return n >= 5 })
			n, withReq, last := rc.counts()
			if served := lp.servedCount(); (served == 5) != tc.loopServe || n != 5 || last.Status != 200 || last.Bytes != 5 {
				t.Fatalf("loop served %d of 5; observed %d (%d with a request), last %+v", served, n, withReq, last)
			}
			if tc.loopServe && withReq != 0 {
				t.Errorf("%d of the loop's reports carried a request", withReq)
			}
			// A chunked answer goes over pending, and is reported there.
			_, _ = io.WriteString(c, "GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n")
			if _, err := readHeadLines(br); err != nil {
				t.Fatal(err)
			}
			if body, err := readChunked(br); err != nil || body != "ahello" {
				t.Fatalf("chunked: %q %v", body, err)
			}
			testutil.Eventually(t, "the pending answer reported", func() bool { n, _, _ := rc.counts(); return n == 6 })
		})
	}
}

// The loop's threads share the connections, however the kernel wakes
// them: connections opened one after another, each served before the next
// opens (so the first idle thread would be woken for every one), end up
// spread over the threads, and each thread serves its own. A connection
// given back by the net/http path goes to the thread with the fewest.
func TestLoopThreadsShareConnections(t *testing.T) {
	lp, front := plainLoop(t)
	const conns = 8
	for range conns {
		c, br := dialFront(t, front)
		if got := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1); got[0].body != "app" {
			t.Fatal(got[0])
		}
	}
	per := make([]uint64, len(lp.threads))
	for i, th := range lp.threads {
		per[i] = th.served.Load()
		if d := int(th.load.Load()) - conns/len(lp.threads); d < -1 || d > 1 {
			t.Errorf("thread %d holds %d of %d connections", i, th.load.Load(), conns)
		}
	}
	for i, n := range per {
		if n == 0 {
			t.Errorf("thread %d served nothing: %v per thread", i, per)
		}
	}
	// A POST goes to net/http, which gives the connection back after it.
	c, br := dialFront(t, front)
	exchange(t, c, br, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx", 1)
	before := lp.servedCount()
	if got := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1); got[0].body != "app" || lp.servedCount() != before+1 {
		t.Fatalf("GET after the POST: %s, served %d (was %d)", got[0], lp.servedCount(), before)
	}
	for i, th := range lp.threads {
		if d := int(th.load.Load()) - (conns+1)/len(lp.threads); d < -1 || d > 1 {
			t.Errorf("after the hand-back, thread %d holds %d of %d connections", i, th.load.Load(), conns+1)
		}
	}
}

// An idle loop sleeps: with nothing to serve its threads wait without a
// timeout, and with an idle keep-alive connection they wake for the sweep
// once a second, not at the raw wait's pace (every 10 ms, or at each of
// the runtime's preemption signals), which would cost an idle daemon CPU
// and wake-ups (docs/performance.md, "Idle cost").
func TestLoopIdleWakeUps(t *testing.T) {
	for _, tc := range []struct {
		name     string
		conns    int
		idle     time.Duration
		maxWaits int
	}{
		// The first (raw) wait, then one without a timeout, which the
		// stop ends: a 1 s timeout would add three.
		{"no connections", 0, 3 * time.Second, 3},
		// Its events, the sweeps (one a second), the stop's.
		{"an idle keep-alive connection", 1, 1500 * time.Millisecond, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lp, front := plainLoop(t)
			for range tc.conns {
				c, br := dialFront(t, front)
				exchange(t, c, br, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
			}
			time.Sleep(tc.idle)
			lp.Stop()
			<-lp.Done() // the counts are ours to read from here
			for i, th := range lp.threads {
				t.Logf("thread %d: %d waits", i, th.waits)
				if th.waits > tc.maxWaits {
					t.Errorf("thread %d woke %d times in %v idle", i, th.waits, tc.idle)
				}
			}
		})
	}
}

// A request that closes its connection (Connection: close, or HTTP/1.0
// without keep-alive: how clients without keep-alive ask) is served by
// the loop, which ends the connection as net/http does: the answer says
// it closes, a FIN follows it, and nothing sent after that request is
// read as another. The client reads the answer and a clean end, no RST.
func TestLoopServesRequestsThatClose(t *testing.T) {
	lp, front := plainLoop(t)
	for i, req := range []string{
		"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a HTTP/1.0\r\n\r\n",
	} {
		c, err := net.Dial("tcp", front)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		all, err := io.ReadAll(c) // to the FIN; an RST would be an error
		c.Close()
		if err != nil {
			t.Fatalf("%q: %v after %q", req, err, all)
		}
		if n := strings.Count(string(all), "HTTP/1."); n != 1 || !strings.HasSuffix(string(all), "\r\n\r\napp") {
			t.Fatalf("%q: %d answers: %q", req, n, all)
		}
		if i == 0 && !strings.Contains(string(all), "Connection: close\r\n") {
			t.Fatalf("%q: the answer does not say the connection closes: %q", req, all)
		}
		if served, handed := lp.Stats(); served != uint64(i+1) || handed != 0 {
			t.Fatalf("%q: served %d, handed off %d", req, served, handed)
		}
	}
}

// TestLoopClearsListenerLinger: a listener that comes with SO_LINGER set
// (inherited through socket activation or the fd store) would pass it to
// every accepted socket, and the loop's raw close would then block with
// its P held. NewLoop clears it, and the loop still serves.
func TestLoopClearsListenerLinger(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	linger := func(set *unix.Linger) *unix.Linger {
		rc, err := ln.(*net.TCPListener).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got *unix.Linger
		var serr error
		if err := rc.Control(func(fd uintptr) {
			if set != nil {
				serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, set)
				return
			}
			got, serr = unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER)
		}); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		return got
	}
	linger(&unix.Linger{Onoff: 1, Linger: 5})
	if lg := linger(nil); lg.Onoff == 0 {
		t.Fatal("SO_LINGER did not stick on the test's listener")
	}
	p := New(Options{})
	_, app := upstream(t, "app", nil)
	activate(p, "r1", app)
	lp, err := p.NewLoop(ln, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- lp.Run() }()
	defer func() { lp.Stop(); <-ran }()
	if lg := linger(nil); lg.Onoff != 0 {
		t.Errorf("after NewLoop the listener still lingers: %+v", *lg)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if h := exchange(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1); !strings.Contains(h[0].line, " 200 ") {
		t.Errorf("%q through the loop", h[0].line)
	}
}
