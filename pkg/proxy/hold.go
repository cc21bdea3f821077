package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// DefaultMaxHeld is Options.MaxHeld when left zero: as many requests as
// the kernel queues on a listening socket by default (SOMAXCONN), which is
// what a restarting daemon behind a socket unit has to take over at once.
const DefaultMaxHeld = 4096

// DefaultHoldRelease is Options.HoldRelease when left zero: enough to keep
// a small app's workers busy, few enough that a cold app (empty caches, a
// connection pool still filling) is not handed thousands of requests at
// the same instant.
const DefaultHoldRelease = 32

// holdRetryAfter is the Retry-After (seconds) of a 503 from the hold: the
// release did not come in time, or too many requests wait already. It is a
// guess at when a restarting daemon serves again; clients that honour it
// come back soon, not in a tight loop.
const holdRetryAfter = "5"

// gate is one state of the hold. Writers (Hold, EndHold, Swap with a
// backend) replace it and close the old one's open channel, which wakes
// every request waiting on it; readers only load it, so a request never
// takes a lock to find out whether to wait.
type gate struct {
	// timeout > 0: a request that finds no backend waits up to this long.
	// 0: it is answered 503 "No active release" at once (the spec).
	timeout time.Duration
	open    chan struct{} // closed when this gate is replaced
	// untilSwap: a Pause installed it, and the next Swap ends it.
	untilSwap bool
}

// Hold makes requests that find no active backend wait for one instead of
// being answered 503 at once: each waits until a Swap makes a backend
// active, then goes to it (an upgrade is pinned to it as usual); until
// timeout has passed since it arrived, then it is answered 503 with
// Retry-After; until its client goes away; or until EndHold. At most
// Options.MaxHeld requests wait at once; beyond that a request is answered
// 503 with Retry-After at once. While a backend is active Hold changes
// nothing, and requests never look at it.
//
// Calling Hold while holding changes the timeout for requests that arrive
// later; those already waiting keep theirs. timeout <= 0 is EndHold. Hold
// and EndHold are safe for concurrent use with each other, Swap and
// requests.
func (p *Proxy) Hold(timeout time.Duration) { p.setGate(max(timeout, 0)) }

// EndHold stops holding: requests waiting without a backend are answered
// 503 "No active release" at once, and so are later ones while no backend
// is active. It may be called when not holding.
func (p *Proxy) EndHold() { p.setGate(0) }

// Held returns how many requests wait for a backend now.
func (p *Proxy) Held() int { return int(p.held.Load()) }

// HoldGaveUp returns how many requests the hold has answered 503 since
// New: no backend came within the hold's timeout, or Options.MaxHeld
// requests waited already.
func (p *Proxy) HoldGaveUp() int64 { return p.gaveUp.Load() }

// ErrNotHeld is what OnError hears about a request the hold gave up on.
var ErrNotHeld = errors.New("no active release in time: answered 503 with Retry-After")

// setGate installs a gate with timeout and wakes the waiters of the old one.
func (p *Proxy) setGate(timeout time.Duration) {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	old := p.gate.Load()
	p.gate.Store(&gate{timeout: timeout, open: make(chan struct{})})
	close(old.open)
}

// Pause takes the active backend out, as Swap(nil) does, and with timeout
// > 0 holds the requests that arrive meanwhile, each up to timeout, until
// the next Swap: a Swap to a backend sends them to it, a Swap to nil (the
// release stopped for good) answers them 503 at once. Either Swap ends the
// hold. It is for a backend whose process restarts (a crash): its traffic
// waits for it instead of failing. timeout <= 0 is Swap(nil) and leaves
// the hold as it is. It returns the backend that was active.
func (p *Proxy) Pause(timeout time.Duration) (prev *Backend) {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	// The hold first, then the route: whoever finds no backend (a new
	// request, or one that failed on it and waits in the crash hold)
	// finds this gate, never the one before it.
	if timeout > 0 {
		old := p.gate.Load()
		p.gate.Store(&gate{timeout: timeout, open: make(chan struct{}), untilSwap: true})
		close(old.open)
	}
	return p.setMain(nil, true)
}

// wake lets waiting requests look for a backend again; Swap calls it after
// it changed the active backend. A hold that Pause started ends here (the
// requests it held find the new backend, or none: 503); another hold stays
// as it is.
func (p *Proxy) wake() {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	old := p.gate.Load()
	if old.timeout == 0 {
		return // nobody waits on a gate that does not hold
	}
	timeout := old.timeout
	if old.untilSwap {
		timeout = 0
	}
	p.gate.Store(&gate{timeout: timeout, open: make(chan struct{})})
	close(old.open)
}

// await is the path of a request that found no active backend. It returns
// a backend with the request counted on it, or nil once it has answered
// the request itself (as it does for a request that waited: it forwards
// that one itself, paced by release).
//
// The gate is loaded before the backend is looked for again: a Swap that
// the look misses stores its backend first and replaces the gate after,
// so it closes the gate loaded here (or one that replaced it, closing it).
func (p *Proxy) await(w http.ResponseWriter, r *http.Request, upgrade bool) (*Backend, *atomic.Int64, string) {
	g := p.gate.Load()
	if b, n, c := p.acquire(r, upgrade); b != nil {
		return b, n, c
	}
	if g.timeout == 0 {
		http.Error(w, "No active release", http.StatusServiceUnavailable)
		return nil, nil, ""
	}
	if pw, ok := w.(*pacedWriter); ok {
		// Released by a pause to no backend: give its release slot back
		// while it waits, or waiters holding every slot would keep each
		// other from being released when the backend comes.
		pw.free()
	}
	if p.held.Add(1) > p.maxHeld {
		p.held.Add(-1)
		p.giveUp(w, r, "No active release; too many requests waiting for one",
			fmt.Errorf("%w (%d requests waiting already, the bound)", ErrNotHeld, p.maxHeld))
		return nil, nil, ""
	}
	held := true
	leave := func() {
		if held {
			held = false
			p.held.Add(-1)
		}
	}
	defer leave()
	timer := time.NewTimer(g.timeout)
	defer timer.Stop()
	for {
		select {
		case <-g.open:
		case <-timer.C:
			p.giveUp(w, r, "No active release", fmt.Errorf("%w (held %s, the hold timeout)", ErrNotHeld, g.timeout))
			return nil, nil, ""
		case <-r.Context().Done():
			// Nobody reads this answer; the status keeps net/http from
			// writing a 200 for the handler.
			w.WriteHeader(statusClientClosed)
			return nil, nil, ""
		}
		g = p.gate.Load()
		if p.Active() != nil {
			// A backend came: go to it with the others released now, a
			// few at a time (release), within the same deadline.
			leave()
			p.release(w, r, timer.C)
			return nil, nil, ""
		}
		if g.timeout == 0 {
			http.Error(w, "No active release", http.StatusServiceUnavailable)
			return nil, nil, ""
		}
		// A backend came and went again (a Swap to nil), or the timeout
		// changed: wait on the new gate, within the same deadline.
	}
}

// giveUp answers 503 with Retry-After (the hold gave up on this request,
// but a release is expected soon), counts it and reports err.
func (p *Proxy) giveUp(w http.ResponseWriter, r *http.Request, body string, err error) {
	p.gaveUp.Add(1)
	if p.onError != nil {
		p.onError("", fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err))
	}
	unavailable(w, body)
}

// unavailable answers 503 with Retry-After.
func unavailable(w http.ResponseWriter, body string) {
	w.Header().Set("Retry-After", holdRetryAfter)
	http.Error(w, body, http.StatusServiceUnavailable)
}

// HoldUntilSwap holds as Hold(timeout) does, until the next Swap: a Swap
// to a backend sends the waiting requests to it and ends the hold, so a
// later moment without a backend (a stop) answers 503 at once again. It
// is the hold before a daemon's first deploy (proxy.holdBeforeFirstDeploy).
// timeout <= 0 is EndHold.
func (p *Proxy) HoldUntilSwap(timeout time.Duration) {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	old := p.gate.Load()
	p.gate.Store(&gate{timeout: max(timeout, 0), open: make(chan struct{}), untilSwap: timeout > 0})
	close(old.open)
}
