package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

const (
	httpWorkers = 4
	wsWorkers   = 3
	slowWorkers = 1
	// clientTimeout bounds one request or WebSocket step: far above a
	// SIGSTOP of the daemon plus a restart, so only a hang reaches it.
	clientTimeout = 90 * time.Second
)

// expectation is which release must answer a request sent now; id "" is
// "any" (a switch may be under way). gen changes with every change, so a
// request that saw two different ones is not judged.
type expectation struct {
	gen uint64
	id  string
}

// failure is one client request (or WebSocket session) that did not
// succeed, with its cause once classified.
type failure struct {
	kind       string // http, slow, ws
	what       string
	start, end time.Time
	err        string
	cause      string // "" until classified
}

// loadGen sends the load and records every outcome.
type loadGen struct {
	url   string
	seed  uint64
	tl    *timeline
	gate  gate
	tr    *http.Transport
	cctx  context.Context
	stopF context.CancelFunc
	wg    sync.WaitGroup

	expect atomic.Pointer[expectation]
	gen    atomic.Uint64

	ok       [3]atomic.Int64 // http, slow, ws
	mu       sync.Mutex
	failures []*failure
	wrong    []string // requests answered by another release than the expected one
}

func newLoadGen(url string, seed uint64, tl *timeline) *loadGen {
	lg := &loadGen{url: url, seed: seed, tl: tl}
	lg.tr = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: clientTimeout}).DialContext,
		MaxIdleConnsPerHost: httpWorkers + slowWorkers,
		DisableCompression:  true,
	}
	lg.expect.Store(&expectation{})
	return lg
}

// setExpect says which release must answer from now on ("" for any).
func (lg *loadGen) setExpect(id string) {
	lg.expect.Store(&expectation{gen: lg.gen.Add(1), id: id})
}

func (lg *loadGen) start() {
	lg.cctx, lg.stopF = context.WithCancel(context.Background())
	for w := 0; w < httpWorkers; w++ {
		lg.wg.Add(1)
		go lg.httpWorker(w)
	}
	for w := 0; w < slowWorkers; w++ {
		lg.wg.Add(1)
		go lg.slowWorker(w)
	}
	for w := 0; w < wsWorkers; w++ {
		lg.wg.Add(1)
		go lg.wsWorker(w)
	}
}

// stop ends the load and waits for every worker.
func (lg *loadGen) stop() {
	if lg.stopF == nil {
		return
	}
	lg.stopF()
	lg.gate.resume()
	lg.wg.Wait()
	lg.tr.CloseIdleConnections()
	lg.stopF = nil
}

// pause waits until no request or WebSocket is open and holds new ones
// back; the client's idle keep-alive connections are closed too, so the
// daemon is left with no client connection at all.
func (lg *loadGen) pause(ctx context.Context) error {
	err := lg.gate.pause(ctx)
	lg.tr.CloseIdleConnections()
	return err
}

func (lg *loadGen) resume() { lg.gate.resume() }

func (lg *loadGen) rng(kind, w int) *mrand.Rand {
	return mrand.New(mrand.NewPCG(lg.seed, uint64(kind*1000+w+1)))
}

func (lg *loadGen) fail(f *failure) {
	lg.mu.Lock()
	lg.failures = append(lg.failures, f)
	lg.mu.Unlock()
}

// pace waits d between two requests of one worker: the load's rate, not
// a synchronisation.
func (lg *loadGen) pace(d time.Duration) bool {
	select {
	case <-lg.cctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func (lg *loadGen) httpWorker(w int) {
	defer lg.wg.Done()
	rng := lg.rng(1, w)
	client := &http.Client{Transport: lg.tr, Timeout: clientTimeout}
	for lg.gate.enter(lg.cctx) {
		path, want := "/", -1
		if rng.IntN(10) == 0 {
			want = rng.IntN(256 << 10)
			path = fmt.Sprintf("/bytes?n=%d", want)
		}
		e0 := lg.expect.Load()
		t0 := time.Now()
		body, err := get(lg.cctx, client, lg.url+path)
		e1 := lg.expect.Load()
		lg.gate.leave()
		if lg.cctx.Err() != nil {
			return // the run ended while it was in flight
		}
		switch {
		case err != nil:
			lg.fail(&failure{kind: "http", what: "GET " + path, start: t0, end: time.Now(), err: err.Error()})
		case want >= 0 && len(body) != want:
			lg.fail(&failure{kind: "http", what: "GET " + path, start: t0, end: time.Now(), err: fmt.Sprintf("%d bytes, want %d", len(body), want)})
		case want < 0 && !strings.HasPrefix(body, "hello from release "):
			lg.fail(&failure{kind: "http", what: "GET " + path, start: t0, end: time.Now(), err: fmt.Sprintf("body %q", body)})
		default:
			lg.ok[0].Add(1)
			if want < 0 && e0 == e1 && e0.id != "" && body != "hello from release "+e0.id+"\n" {
				lg.mu.Lock()
				lg.wrong = append(lg.wrong, fmt.Sprintf("%s: GET / answered %q, but release %s was active since before it was sent",
					t0.Format("15:04:05.000"), strings.TrimSpace(body), e0.id))
				lg.mu.Unlock()
			}
		}
		if !lg.pace(time.Duration(10+rng.IntN(20)) * time.Millisecond) {
			return
		}
	}
}

// get sends a GET and reads the whole body; a status other than 200 is an
// error naming the status and the body.
func get(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("status %d, body cut after %d bytes: %w", resp.StatusCode, len(b), err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %q", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// slowWorker streams /events (100 ms per tick) for 0.5 to 6 s: longer than
// the drain timeout at times, so a switch sometimes cuts one.
func (lg *loadGen) slowWorker(w int) {
	defer lg.wg.Done()
	rng := lg.rng(2, w)
	client := &http.Client{Transport: lg.tr, Timeout: clientTimeout}
	for lg.gate.enter(lg.cctx) {
		n := 5 + rng.IntN(56)
		t0 := time.Now()
		err := stream(lg.cctx, client, fmt.Sprintf("%s/events?count=%d", lg.url, n), n)
		lg.gate.leave()
		if lg.cctx.Err() != nil {
			return
		}
		if err != nil {
			lg.fail(&failure{kind: "slow", what: fmt.Sprintf("GET /events?count=%d", n), start: t0, end: time.Now(), err: err.Error()})
		} else {
			lg.ok[1].Add(1)
		}
		if !lg.pace(time.Duration(50+rng.IntN(200)) * time.Millisecond) {
			return
		}
	}
}

func stream(ctx context.Context, client *http.Client, url string, n int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200)) // for the message only
		return fmt.Errorf("status %d: %q", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	sc := bufio.NewScanner(resp.Body)
	got := 0
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: tick ") {
			got++
			if line != fmt.Sprintf("data: tick %d", got) {
				return fmt.Errorf("tick %d reads %q", got, line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("stream cut after %d of %d ticks: %w", got, n, err)
	}
	if got != n {
		return fmt.Errorf("stream ended after %d of %d ticks", got, n)
	}
	return nil
}

// wsWorker opens a WebSocket, echoes a message every 100-300 ms for 1 to
// 8 s, and closes it normally; then the next one.
func (lg *loadGen) wsWorker(w int) {
	defer lg.wg.Done()
	rng := lg.rng(3, w)
	wsURL := "ws" + strings.TrimPrefix(lg.url, "http") + "/ws"
	for lg.gate.enter(lg.cctx) {
		life := time.Duration(1000+rng.IntN(7000)) * time.Millisecond
		t0 := time.Now()
		msgs, err := lg.wsSession(wsURL, w, life, rng)
		lg.gate.leave()
		if lg.cctx.Err() != nil {
			return
		}
		if err != nil {
			lg.fail(&failure{kind: "ws", what: fmt.Sprintf("WebSocket (%d echoes done)", msgs), start: t0, end: time.Now(), err: err.Error()})
		} else {
			lg.ok[2].Add(1)
		}
		if !lg.pace(time.Duration(50+rng.IntN(200)) * time.Millisecond) {
			return
		}
	}
}

func (lg *loadGen) wsSession(url string, w int, life time.Duration, rng *mrand.Rand) (int, error) {
	ctx, cancel := context.WithTimeout(lg.cctx, clientTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer c.CloseNow()
	end := time.Now().Add(life)
	n := 0
	for time.Now().Before(end) {
		msg := fmt.Sprintf("ws%d-%d", w, n)
		sctx, scancel := context.WithTimeout(lg.cctx, clientTimeout)
		err := c.Write(sctx, websocket.MessageText, []byte(msg))
		var got []byte
		if err == nil {
			_, got, err = c.Read(sctx)
		}
		scancel()
		if err != nil {
			return n, fmt.Errorf("echo %d: %w", n, err)
		}
		if string(got) != msg {
			return n, fmt.Errorf("echo %d: got %q, want %q", n, got, msg)
		}
		n++
		if !lg.pace(time.Duration(100+rng.IntN(200)) * time.Millisecond) {
			return n, nil
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		return n, fmt.Errorf("close: %w", err)
	}
	return n, nil
}

// gate lets the driver hold the load back: enter before a request, leave
// after it; pause waits until nothing is inside and keeps new ones out
// until resume.
type gate struct {
	mu     sync.Mutex
	paused chan struct{} // non-nil while paused; closed by resume
	active int
	idle   chan struct{} // non-nil while pause waits; closed when active drops to 0
}

func (g *gate) enter(ctx context.Context) bool {
	for {
		g.mu.Lock()
		p := g.paused
		if p == nil {
			if ctx.Err() != nil {
				g.mu.Unlock()
				return false
			}
			g.active++
			g.mu.Unlock()
			return true
		}
		g.mu.Unlock()
		select {
		case <-p:
		case <-ctx.Done():
			return false
		}
	}
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

func (g *gate) pause(ctx context.Context) error {
	g.mu.Lock()
	if g.paused == nil {
		g.paused = make(chan struct{})
	}
	if g.active == 0 {
		g.mu.Unlock()
		return nil
	}
	idle := make(chan struct{})
	g.idle = idle
	g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused != nil {
		close(g.paused)
		g.paused = nil
	}
}
