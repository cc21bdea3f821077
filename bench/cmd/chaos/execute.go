package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// quietEvery is how often the schedule pauses the load for a footprint
// sample.
const quietEvery = 30 * time.Second

// classifyLag is how old a failure must be before it is judged: by then
// the drain that may explain it has been reported and polled.
const classifyLag = drainSlack + 3*time.Second

// execute runs the whole schedule and the final checks. It returns a
// *violation when an invariant broke, another error when the run itself
// could not go on.
func (r *run) execute(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.started = time.Now()
	if err := r.startDaemon(ctx, nil); err != nil {
		return err
	}
	w := r.watch(ctx)
	r.w = w
	defer func() { _ = w.stop() }() // stops the watcher on every path; its finding was read by judge or the final check
	r.note("deploy (first release)")
	if err := r.deploy(ctx, ""); err != nil {
		return err
	}
	r.load.start()
	if err := r.settle(ctx, "after the first deploy"); err != nil {
		return err
	}
	if err := r.quietPoint(ctx, "start"); err != nil {
		return err
	}
	deadline := r.started.Add(r.o.duration)
	lastQuiet := time.Now()
	for time.Now().Before(deadline) {
		a := r.next()
		r.note(a.kind)
		if err := r.do(ctx, a); err != nil {
			return err
		}
		if err := r.judge(w, time.Now().Add(-classifyLag)); err != nil {
			return err
		}
		if err := r.settle(ctx, "after "+a.kind); err != nil {
			return err
		}
		if time.Since(lastQuiet) >= quietEvery {
			if err := r.quietPoint(ctx, "after "+a.kind); err != nil {
				return err
			}
			lastQuiet = time.Now()
		}
		if err := wait(ctx, ms(r.rng.IntN(1<<20), 100, 1500)); err != nil {
			return err
		}
	}
	r.note("end: quiet point, stop the load, shutdown")
	if err := r.quietPoint(ctx, "end"); err != nil {
		return err
	}
	r.load.stop()
	if err := r.judge(w, time.Now().Add(time.Hour)); err != nil {
		return err
	}
	res, err := r.rollbridgectl(ctx, "shutdown", "--socket", r.sock)
	if err != nil {
		return err
	}
	if res.code != 0 {
		return violationf("rollbridgectl shutdown exited %d: %s", res.code, res.stderr)
	}
	select {
	case <-r.d.done:
	case <-time.After(waitLimit):
		return violationf("the daemon still runs %s after shutdown answered", waitLimit)
	}
	r.d.log.Close()
	r.d = nil
	var left map[int]ourProc
	err = poll(ctx, "nothing of the run left after shutdown", func() (bool, error) {
		var err error
		left, err = r.ours()
		return len(left) == 0, err
	})
	if err != nil && len(left) > 0 {
		var l []string
		for pid, p := range left {
			l = append(l, fmt.Sprintf("pid %d (%s)", pid, p.cmd))
		}
		sort.Strings(l)
		return violationf("processes left after shutdown: %s", strings.Join(l, "; "))
	}
	if err != nil {
		return err
	}
	if err := w.stop(); err != nil {
		return err
	}
	_, err = r.loadState()
	return err
}

// judge fails on a broken invariant the background checks or the load
// found: failures up to t that no allowed cause explains, requests
// answered by the wrong release, a state file that did not load.
func (r *run) judge(w *watcher, t time.Time) error {
	if err := w.failed(); err != nil {
		return err
	}
	if err := r.readDrains(); err != nil {
		return err
	}
	if bad := r.load.classifyUpTo(t); len(bad) > 0 {
		var l []string
		for i, f := range bad {
			if i == 10 {
				l = append(l, fmt.Sprintf("... and %d more", len(bad)-10))
				break
			}
			l = append(l, f.String())
		}
		return violationf("%d client requests failed with no allowed cause:\n  %s", len(bad), strings.Join(l, "\n  "))
	}
	r.load.mu.Lock()
	wrong := append([]string(nil), r.load.wrong...)
	r.load.mu.Unlock()
	if len(wrong) > 0 {
		return violationf("requests answered by a release other than the active one:\n  %s", strings.Join(wrong, "\n  "))
	}
	return nil
}

// note records an action for the failure report (and prints it with -v).
func (r *run) note(s string) {
	line := fmt.Sprintf("%8s  %s", time.Since(r.started).Round(10*time.Millisecond), s)
	r.mu.Lock()
	r.actions = append(r.actions, line)
	if len(r.actions) > 40 {
		r.actions = r.actions[len(r.actions)-40:]
	}
	r.mu.Unlock()
	if r.o.verbose {
		fmt.Println(line)
	}
}

func (r *run) notef(format string, args ...any) { r.note(fmt.Sprintf(format, args...)) }

func (r *run) lastActions() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "  " + strings.Join(r.actions, "\n  ") + "\n"
}

// summary is what the run did and saw.
func (r *run) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nchaos: %s of faults (seed %d), %d daemon restarts\n", time.Since(r.started).Round(time.Second), r.o.seed, r.restarts)
	var ks []string
	for k, v := range r.counts {
		ks = append(ks, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(ks)
	fmt.Fprintf(&b, "actions: %s\n", strings.Join(ks, ", "))
	fmt.Fprintf(&b, "load: %d HTTP requests, %d streams, %d WebSocket sessions succeeded\n",
		r.load.ok[0].Load(), r.load.ok[1].Load(), r.load.ok[2].Load())
	if len(r.loopSeen) > 0 {
		var served, handed uint64
		for _, e := range r.loopSeen {
			served, handed = served+e.Served, handed+e.HandedOff
		}
		fmt.Fprintf(&b, "event loop: %d requests served by it, %d connections handed off (at the quiet points of %d daemons)\n", served, handed, len(r.loopSeen))
	}
	if c := r.load.causes(); len(c) > 0 {
		fmt.Fprintf(&b, "failed, by cause:\n  %s\n", strings.Join(c, "\n  "))
	} else {
		fmt.Fprintln(&b, "failed: none")
	}
	for _, d := range knownDefects {
		if n := r.knownLeaks[d]; n > 0 {
			fmt.Fprintf(&b, "KNOWN DEFECT %s: %d processes survived rollbridgectl recover --force (docs/chaos.md)\n", d, n)
		}
	}
	if len(r.knownLog) > 0 {
		fmt.Fprintf(&b, "  %s\n", strings.Join(r.knownLog, "\n  "))
	}
	if r.w != nil {
		fmt.Fprintf(&b, "state file: loaded %d times during the run\n", r.w.loads.Load())
	}
	to, conns := r.tl.drainCuts()
	fmt.Fprintf(&b, "drain timeouts reported by the daemon: %d, cutting %d connections\n", to, conns)
	fmt.Fprintln(&b, "daemon footprint at quiet points (no client connection, no drain):")
	for _, s := range r.quiet {
		fmt.Fprintf(&b, "  daemon #%d at %5s: %3d fds, %3d threads, %6d KiB RSS  (%s)\n", s.incarnation, s.at, s.fds, s.threads, s.rssKiB, s.label)
	}
	return b.String()
}
