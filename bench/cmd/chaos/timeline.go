package main

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Causes a failed request may have that the invariants allow. Each is
// counted and reported on its own; any other failure is a violation.
const (
	causeKill  = "in flight at a SIGKILL of the daemon"
	causeCrash = "the proxied web process was killed (app crash)"
	causeDrain = "cut by the operator's drain timeout"
	// A rollback to a release that still drains stops it first (cli.md),
	// cutting what it still carried: the operator asked for that too.
	causeRollback = "cut by a rollback to its draining release"
)

// drainSlack is how far apart the moment a client saw its connection cut
// and the daemon's `release drained` (timedOut) event may lie for the cut
// to be put down to that drain: the daemon closes the connections and
// then logs, so the two are normally milliseconds apart; the margin
// covers a loaded host's scheduling.
const drainSlack = 2 * time.Second

// timeline records the faults the driver injected and the drains the
// daemon reported, to tell the failures the invariants allow from the
// others.
type timeline struct {
	mu        sync.Mutex
	kills     []time.Time // SIGKILLs of the daemon
	crashes   []span      // from the kill of an active web process until its replacement answered
	drains    map[string]drainEvent
	rollbacks []time.Time // when each rollback command started
}

type span struct{ from, to time.Time } // to zero: still open

type drainEvent struct {
	at          time.Time
	release     string
	timedOut    bool // the drain timeout ended it
	interrupted bool // a rollback (or a shutdown) cut it short
	closed      int  // connections cut, plus plain requests left to end with the process
}

func (tl *timeline) kill(at time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.kills = append(tl.kills, at)
}

// crash opens a crash window and returns the function that closes it.
func (tl *timeline) crash(at time.Time) func() {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.crashes = append(tl.crashes, span{from: at})
	i := len(tl.crashes) - 1
	return func() {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		tl.crashes[i].to = time.Now()
	}
}

func (tl *timeline) rollback(at time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.rollbacks = append(tl.rollbacks, at)
}

func (tl *timeline) drained(e drainEvent) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.drains == nil {
		tl.drains = map[string]drainEvent{}
	}
	tl.drains[e.at.Format(time.RFC3339Nano)+" "+e.release] = e
}

// classify names the allowed cause of f, or "".
func (tl *timeline) classify(f *failure) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, k := range tl.kills {
		if !f.start.After(k) && !f.end.Before(k) {
			return causeKill
		}
	}
	for _, c := range tl.crashes {
		if !f.end.Before(c.from) && (c.to.IsZero() || !f.start.After(c.to)) {
			return causeCrash
		}
	}
	if f.kind == "slow" || f.kind == "ws" {
		for _, d := range tl.drains {
			// Open before the drain ended, cut when it ended, and the
			// daemon says it cut connections then.
			// A plain HTTP request the drain left in flight ends with the
			// release's process (proxy.CloseConnections), which the stop
			// sequence kills at the latest forceStop later.
			late := drainSlack
			if f.kind == "slow" {
				late += forceStop
			}
			if !(d.timedOut || d.interrupted) || d.closed == 0 || !f.start.Before(d.at) || f.end.Before(d.at.Add(-drainSlack)) || f.end.After(d.at.Add(late)) {
				continue
			}
			if d.interrupted {
				for _, rb := range tl.rollbacks {
					if !rb.After(d.at) && d.at.Sub(rb) <= drainSlack {
						return causeRollback
					}
				}
			}
			if d.timedOut && f.start.Before(d.at.Add(-drainTimeout)) {
				return causeDrain
			}
		}
	}
	return ""
}

// drainCuts is how many connections the daemon says it cut at drain
// timeouts.
func (tl *timeline) drainCuts() (timeouts, conns int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, d := range tl.drains {
		if d.timedOut {
			timeouts++
			conns += d.closed
		}
	}
	return timeouts, conns
}

// classifyUpTo classifies the failures that ended before t and returns
// those no allowed cause explains.
func (lg *loadGen) classifyUpTo(t time.Time) []*failure {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	var bad []*failure
	for _, f := range lg.failures {
		if f.cause != "" || f.end.After(t) {
			continue
		}
		if f.cause = lg.tl.classify(f); f.cause == "" {
			f.cause = "unexplained"
			bad = append(bad, f)
		}
	}
	return bad
}

// causes counts the classified failures by cause and kind.
func (lg *loadGen) causes() []string {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	n := map[string]int{}
	for _, f := range lg.failures {
		c := f.cause
		if c == "" {
			c = "not judged: the run stopped first"
		}
		n[c+" ("+f.kind+")"]++
	}
	var out []string
	for k, v := range n {
		out = append(out, fmt.Sprintf("%6d  %s", v, k))
	}
	sort.Strings(out)
	return out
}

func (f *failure) String() string {
	return fmt.Sprintf("%s %s [%s .. %s]: %s", f.kind, f.what, f.start.Format("15:04:05.000"), f.end.Format("15:04:05.000"), f.err)
}
