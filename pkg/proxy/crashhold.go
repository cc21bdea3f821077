package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"
)

// The crash hold: requests that were on their way to the active release's
// app when its process went down.
//
// The hold (hold.go) covers the requests that arrive once the supervisor
// has seen the process exit and taken its backend out (Pause). Requests
// already forwarded then, and those that reach the closed port before the
// exit is seen, fail on the backend instead: the connection is refused,
// or closed with no answer. When the app cannot have acted on such a
// request, it waits like a held request for the backend to serve again,
// and is sent once more:
//
//   - the connection was refused or reset as it was made (the app's port
//     is closed, or the process died with it in its listen queue): any
//     method, with or without a body, since not a byte of it was read;
//   - the request head could not be written whole (the connection was
//     reset under it): any method without a body; the app never had the
//     complete request;
//   - no byte of an answer came before the connection ended, for a
//     request without a body whose method may be repeated (GET, HEAD,
//     OPTIONS, TRACE; RFC 9110 §9.2.2).
//
// Nothing else is sent again: not a request whose body was sent, not a
// POST that reached the app, not an upgrade (upgrades are not forwarded
// through here at all), and a request is sent again at most once. If the
// transport's own retry of a reused connection (upstream.go) sent it twice
// already, it is sent again only to a restarted process, never at once to
// one that still takes connections.
//
// Only the active release's backend qualifies (the one routed to, or the
// one a Pause took out); a canary's or a draining release's failure is
// answered 502 as before, since no one tells the proxy when they serve
// again.
//
// How the request learns that the backend serves again: the supervisor
// says so, as it does for the hold, by a Swap once the restarted process
// is healthy and owns its port. Every change of the route starts a new
// epoch, and each exchange with an app notes the epoch it started in (one
// atomic load). After a failure:
//
//   - if the route changed since the exchange began (a Pause, or even the
//     Swap after the restart already), the request looks at the route now:
//     a backend is routed to: it goes there; none: it waits;
//   - if nothing changed, the supervisor has not seen the exit yet, or the
//     process is fine (one of its workers died, say). Unless the failure
//     was a refused connection, a new connection tells which: if the app
//     accepts it, the request is sent on it at once; if it is refused, the
//     request waits for the next change of the route (the Pause, then the
//     Swap);
//   - while it waits, it counts in Held, within Options.MaxHeld, up to
//     the crash hold's timeout from its failure (then 503 with
//     Retry-After, ErrNotHeld), and once released it takes its turn among
//     Options.HoldRelease. A Swap to no backend while no hold is in force
//     (the release stopped, or its process will not be restarted) answers
//     it 503 at once.
//
// A process that refuses connections without exiting (it closed its
// listener on its own) is never taken out by the supervisor: its requests
// wait out the timeout.

// epoch is one state of the routing, for the crash hold. Writers replace
// it, under routeMu, right after each store of the route, and close the
// old one's changed.
type epoch struct {
	// active is the active release's backend: the route's main backend,
	// or the one a Pause took out while its process restarts; nil when no
	// release is active.
	active  *Backend
	changed chan struct{}
}

// nextEpochLocked starts the next epoch; routeMu is held.
func (p *Proxy) nextEpochLocked(active *Backend) {
	old := p.epoch.Load()
	p.epoch.Store(&epoch{active: active, changed: make(chan struct{})})
	close(old.changed)
}

// unservedError is a failed exchange that the app cannot have acted on,
// if the request has no body: unsent, its head did not reach the app
// whole; otherwise no byte of an answer came.
type unservedError struct {
	err    error
	unsent bool
}

func (e *unservedError) Error() string { return e.err.Error() }
func (e *unservedError) Unwrap() error { return e.err }

// errReleaseGone is a request of the crash hold when the release it waited
// for was stopped (a Swap to no backend, no hold in force): it is answered
// 503 "No active release", as a request arriving then would be.
var errReleaseGone = errors.New("no active release")

// refused reports whether err is a connection the app's port refused, or
// reset before it was established (a process killed with connections in
// its listen queue resets them): nothing was sent on it.
func refused(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial" && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET))
}

// unseen reports whether err leaves no doubt that the app never had the
// request: refused, or its head not written whole.
func unseen(err error) bool {
	var ue *unservedError
	return refused(err) || (errors.As(err, &ue) && ue.unsent)
}

// unserved reports whether req failed with err in a way that lets it be
// sent again (see the rules above); a request with a body qualifies only
// through a refused connection, which its caller checks read nothing.
func unserved(req *http.Request, err error) bool {
	if refused(err) {
		return true
	}
	var ue *unservedError
	if !errors.As(err, &ue) || (req.Body != nil && req.Body != http.NoBody) {
		return false
	}
	return ue.unsent || repeatable(req)
}

// recoverUnserved is the crash hold of req, which failed on b with err in
// an exchange begun in epoch since: when the rules allow, it waits for the
// active release to serve and sends req once more with resend (on pc when
// a connection to the backend is open already), returning what that gave.
// Otherwise it returns err. retried says the transport sent req a second
// time already (its retry after a reused connection failed).
func (p *Proxy) recoverUnserved(b *Backend, req *http.Request, since *epoch, err error, retried bool,
	resend func(nb *Backend, pc *pconn) (*http.Response, error)) (*http.Response, error) {
	hold := time.Duration(p.crashHold.Load())
	if hold <= 0 || req.Context().Err() != nil || !unserved(req, err) {
		return nil, err
	}
	now := p.epoch.Load()
	if now.active != b {
		return nil, err // a canary, or a release switched away from
	}
	if now == since && !refused(err) {
		// Nothing changed: does the app still take connections?
		pc, derr := b.fast.Load().dial(req.Context())
		if derr == nil {
			if retried && !unseen(err) {
				// The process lives and may have had req twice already (a
				// request that kills a worker each time, say): no third.
				_ = pc.conn.Close()
				return nil, err
			}
			return resend(b, pc) // the process lives: send it once more now
		}
		if !refused(derr) {
			return nil, err
		}
		// Refused: down, and the supervisor has not said so yet.
	}
	nb, n, turn, werr := p.awaitServing(req, since, hold)
	if werr != nil {
		return nil, werr
	}
	resp, err := resend(nb, nil)
	turn()
	if err != nil {
		nb.done(n)
		return nil, err
	}
	resp.Body = &countedBody{ReadCloser: resp.Body, b: nb, n: n}
	return resp, nil
}

// awaitServing waits, as a held request, until the route has a backend in
// an epoch later than since, and returns it with req counted on it
// (release with done(n)), and turn, to call once the answer's head came
// (it gives back the release slot, if req waited). The errors: req's
// context's, one wrapping ErrNotHeld (timeout, or too many held), or
// errReleaseGone.
func (p *Proxy) awaitServing(req *http.Request, since *epoch, hold time.Duration) (*Backend, *atomic.Int64, func(), error) {
	timer := time.NewTimer(hold)
	defer timer.Stop()
	held := false
	defer func() {
		if held {
			p.held.Add(-1)
		}
	}()
	for {
		// The epoch and the gate before the route: a change the look
		// below misses closes one of the two channels waited on.
		e, g := p.epoch.Load(), p.gate.Load()
		if e != since {
			if nb, n := p.acquireMain(); nb != nil {
				if !held {
					return nb, n, func() {}, nil // did not wait: no turn to take
				}
				p.held.Add(-1)
				held = false
				select {
				case p.slots <- struct{}{}:
				case <-timer.C:
					nb.done(n)
					return nil, nil, nil, fmt.Errorf("%w (held %s, the hold timeout, and then waited for its turn)", ErrNotHeld, hold)
				case <-req.Context().Done():
					nb.done(n)
					return nil, nil, nil, req.Context().Err()
				}
				return nb, n, func() { <-p.slots }, nil
			}
		}
		// A fresh look at the gate: g may predate a Pause that stored
		// its gate and cleared the route after g was loaded.
		if p.route.Load() == nil && p.gate.Load().timeout == 0 {
			return nil, nil, nil, errReleaseGone
		}
		if !held {
			if p.held.Add(1) > p.maxHeld {
				p.held.Add(-1)
				return nil, nil, nil, fmt.Errorf("%w (%d requests waiting already, the bound)", ErrNotHeld, p.maxHeld)
			}
			held = true
			// A request released from an earlier hold still has its
			// release slot: give it back while it waits, or waiters
			// holding every slot would keep each other out (await does
			// the same).
			freeSlot(req.Context())
		}
		select {
		case <-e.changed:
		case <-g.open:
		case <-timer.C:
			return nil, nil, nil, fmt.Errorf("%w (held %s, the hold timeout)", ErrNotHeld, hold)
		case <-req.Context().Done():
			return nil, nil, nil, req.Context().Err()
		}
	}
}

// acquireMain counts a request on the route's main backend, as acquire
// does (the same check against a concurrent Swap), without a canary's
// pick: a request that failed on the active release stays on that side.
func (p *Proxy) acquireMain() (*Backend, *atomic.Int64) {
	rt := p.route.Load()
	for rt != nil {
		b := rt.main
		b.http.Add(1)
		now := p.route.Load()
		if now == rt || now.routes(b) {
			return b, &b.http
		}
		b.done(&b.http)
		rt = now
	}
	return nil, nil
}

// countedBody ends the count of a request sent again on b once its answer
// is read, so that a drain of b waits for it.
type countedBody struct {
	io.ReadCloser
	b    *Backend
	n    *atomic.Int64
	done atomic.Bool
}

func (c *countedBody) Close() error {
	err := c.ReadCloser.Close()
	if c.done.CompareAndSwap(false, true) {
		c.b.done(c.n)
	}
	return err
}
