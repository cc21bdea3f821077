package supervisor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// add records a new release in state Starting with a fresh run. An id
// taken by a live release gets a "-N" suffix, because redeploying what runs
// (say, the same revision to pick up new env) must work; a stopped record
// with that id is replaced in its place, so status lists it where the
// spec's release map keeps a reused key; should the deploy fail, fail puts
// the stopped record back.
func (t *table) add(id, path, revision string, cfg *config.Config) *rel {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &rel{path: path, revision: revision, createdAt: time.Now(), state: release.Starting, run: newRun(cfg)}
	if old := t.findLocked(id); old != nil {
		if !old.state.Live() {
			r.id, r.replaced = id, old
			t.releases[slices.Index(t.releases, old)] = r
			return r
		}
		for n := 2; ; n++ {
			c := id + "-" + strconv.Itoa(n)
			if t.findLocked(c) == nil {
				id = c
				break
			}
		}
	}
	r.id = id
	t.releases = append(t.releases, r)
	return r
}

// rollbackTarget picks the release a rollback relaunches: the one named by
// id, or the one retired most recently. Until relaunch or the end of the
// command, prune keeps it even once it is stopped.
func (t *table) rollbackTarget(id string) (*rel, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, err := t.rollbackTargetLocked(id)
	if err == nil {
		t.relaunching = r
	}
	return r, err
}

func (t *table) rollbackTargetLocked(id string) (*rel, error) {
	if id != "" {
		r := t.findLocked(id)
		switch {
		case r == nil:
			return nil, refuse(ErrNotFound, "release %s is not retained; retained releases: %s", id, t.retainedIDsLocked())
		case r == t.active:
			return nil, refuse(ErrConflict, "release %s is already active", id)
		}
		return r, nil
	}
	var best *rel
	for _, r := range t.releases {
		if r == t.active || r.activatedAt.IsZero() && (r.drainStartedAt.IsZero() || r.canaried) {
			continue // never served traffic as the active release
		}
		if best == nil || r.retiredAtLocked().After(best.retiredAtLocked()) {
			best = r
		}
	}
	if best == nil {
		return nil, refuse(ErrNotFound, "no previous release to roll back to")
	}
	return best, nil
}

func (r *rel) retiredAtLocked() time.Time {
	if !r.drainStartedAt.IsZero() {
		return r.drainStartedAt
	}
	return r.stoppedAt
}

// relaunch moves a stopped record back to Starting with a fresh run,
// keeping what it replaces in r.before for fail. The previous run must be
// fully stopped: that is what keeps a late drain completion away from the
// new run (see run).
func (t *table) relaunch(r *rel, cfg *config.Config) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.findLocked(r.id) != r {
		return refuse(ErrNotFound, "release %s is no longer retained; retained releases: %s", r.id, t.retainedIDsLocked())
	}
	if !isClosed(r.run.stopped) {
		return fmt.Errorf("relaunch release %s: its previous processes are still stopping", r.id)
	}
	if err := t.setStateLocked(r, release.Starting); err != nil {
		return fmt.Errorf("relaunch: %w", err)
	}
	r.lastError = ""
	r.before = &retained{activatedAt: r.activatedAt, drainStartedAt: r.drainStartedAt, stoppedAt: r.stoppedAt, run: r.run}
	r.activatedAt, r.drainStartedAt, r.stoppedAt = time.Time{}, time.Time{}, time.Time{}
	r.run = newRun(cfg)
	t.relaunching = nil // Starting is live: prune skips it anyway
	return nil
}

// current returns r's current run.
func (t *table) current(r *rel) *run {
	t.mu.Lock()
	defer t.mu.Unlock()
	return r.run
}

// activeRelease returns the release that takes traffic, or nil.
func (t *table) activeRelease() *rel {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active
}

// setPorts records the ports of r's current run (for status and the state file).
func (t *table) setPorts(r *rel, ports map[string]int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r.run.ports = ports
}

// addInstance records a process of r's current run before it starts, so a
// stop that comes while it starts finds it.
func (t *table) addInstance(r *rel, in *instance) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r.run.procs = append(r.run.procs, in)
}

// procs returns the processes of r's current run.
func (t *table) procs(r *rel) []*instance {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*instance(nil), r.run.procs...)
}

// runInstances returns every process of r's current run: its procs and
// its extras.
func (t *table) runInstances(r *rel) []*instance {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]*instance(nil), r.run.procs...)
	for _, x := range r.run.extras {
		out = append(out, x.in)
	}
	return out
}

// activate makes the starting release r the active one and switches the
// proxy to backend in the same section.
func (t *table) activate(r *rel, backend *proxy.Backend) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.setStateLocked(r, release.Active); err != nil {
		return fmt.Errorf("switch traffic: %w", err)
	}
	r.run.backend = backend
	r.activatedAt = time.Now()
	r.before, r.replaced = nil, nil
	t.active = r
	t.swap(backend)
	return nil
}

// fail ends the failed start of r (its processes are stopped by then) and
// forgets the services its deploy started. As in the Node original, a
// failed release is never retained: a new release's record is dropped, so
// it is neither shown nor counted by releaseRetention.keep, and a record a
// rollback relaunched goes back to what it was, still a rollback target.
// The "deploy failed" event keeps what went wrong.
func (t *table) fail(r *rel, started []*unit) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, u := range started {
		if t.services[u.cfg.ID] == u {
			delete(t.services, u.cfg.ID)
		}
	}
	if err := t.setStateLocked(r, release.Failed); err != nil {
		return err
	}
	b := r.before
	if b == nil {
		// The Node original adds a release to its map only once it is
		// healthy: what the deploy replaced comes back, else nothing.
		i := slices.Index(t.releases, r)
		if r.replaced != nil {
			t.releases[i] = r.replaced
		} else {
			t.releases = slices.Delete(t.releases, i, i+1)
		}
		return nil
	}
	r.before = nil
	r.activatedAt, r.drainStartedAt, r.stoppedAt, r.run = b.activatedAt, b.drainStartedAt, b.stoppedAt, b.run
	return t.setStateLocked(r, release.Stopped)
}

// retire moves the active-until-now release r to Draining. cancel ends its
// drain early (a stop or a rollback calls it). It returns what the drain
// needs: r's run, its processes and its backend.
func (t *table) retire(r *rel, cancel context.CancelFunc) (*run, []*instance, *proxy.Backend, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.setStateLocked(r, release.Draining); err != nil {
		return nil, nil, nil, fmt.Errorf("retire: %w", err)
	}
	if t.canary == r { // an abort: the canary takes no new client from now on
		t.endCanaryLocked()
	}
	r.drainStartedAt = time.Now()
	r.run.drainCancel = cancel
	return r.run, append([]*instance(nil), r.run.procs...), r.run.backend, nil
}

// beginStop claims the stop of run l of r. Only the first caller gets
// first == true and must stop procs and then call finishStop; later callers
// wait for l.stopped. A release that is active stops taking traffic here.
// procs include the run's extras, whose drains end now; backends are every
// backend of the run, for the caller to close once procs are stopped.
func (t *table) beginStop(r *rel, l *run) (procs []*instance, backends []*proxy.Backend, first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l.drainCancel != nil {
		l.drainCancel()
	}
	for _, x := range l.extras {
		if x.cancel != nil {
			x.cancel()
		}
	}
	if l.stopping {
		return nil, nil, false
	}
	l.stopping = true
	if t.active == r && r.run == l { // l is r's current run (see run); checked so a broken invariant cannot cut traffic
		t.active = nil
		t.swap(nil)
	}
	if t.canary == r && r.run == l {
		t.endCanaryLocked()
	}
	procs = append([]*instance(nil), l.procs...)
	if l.backend != nil {
		backends = append(backends, l.backend)
	}
	for _, x := range l.extras {
		procs = append(procs, x.in)
		if x.backend != nil {
			backends = append(backends, x.backend)
		}
	}
	return procs, backends, true
}

// restopped records a stop command for r, a release that had stopped
// before: as in the Node original, which stops it again, its stoppedAt
// moves to now, so retention counts it as the release stopped last.
func (t *table) restopped(r *rel) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.state == release.Stopped {
		r.stoppedAt = time.Now()
	}
}

// finishStop records that run l of r stopped and wakes those waiting for it.
// served reports whether r had served traffic and is now Stopped; a release
// whose deploy failed stays Starting here, and fail marks it.
//
// l is always r's current run: a record is relaunched only after its run's
// stop finished.
func (t *table) finishStop(r *rel, l *run) (served bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer close(l.stopped)
	r.stoppedAt = time.Now()
	if r.state == release.Starting {
		return false, nil
	}
	if err := t.setStateLocked(r, release.Stopped); err != nil {
		return false, fmt.Errorf("stop: %w", err)
	}
	return true, nil
}

// stopTarget picks the release a stop command stops: the active one, or the
// one named by id, which may be stopped already (the stop then finds
// nothing left to stop). It also returns the singletons that release
// started: they keep running (as in the Node original, a stop touches only
// the release's own processes), but no longer come back after a crash,
// since their release no longer runs. stopped reports that r had stopped
// before.
func (t *table) stopTarget(id string) (r *rel, singles []*unit, stopped bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r = t.active
	if id != "" {
		r = t.findLocked(id)
		if r == nil {
			return nil, nil, false, refuse(ErrNotFound, "release %s is not retained; retained releases: %s", id, t.retainedIDsLocked())
		}
	}
	if r == nil {
		return nil, nil, false, refuse(ErrNotFound, "no release is active; nothing to stop")
	}
	if r == t.active && t.canary != nil {
		return nil, nil, false, refuse(ErrConflict, "release %s runs as a canary beside release %s; promote or abort it first (rollbridgectl rollout promote|abort)", t.canary.id, r.id)
	}
	for _, u := range t.singletons {
		if u.releaseID == r.id {
			singles = append(singles, u)
		}
	}
	return r, singles, r.state == release.Stopped, nil
}

// prune forgets stopped releases beyond the retention: more than keep of
// them, or stopped longer than maxAgeMs ago. As in the Node original, the
// ones kept are those stopped most recently (ties go to the later deploy),
// not the last in the list: a rollback puts a release back in its old
// place, and it must not be the first to go once it retires again.
// Releases that run or are still stopping, and the target of a running
// rollback, are never pruned.
func (t *table) prune(now time.Time, ret config.ReleaseRetention) {
	t.mu.Lock()
	defer t.mu.Unlock()
	type stopped struct {
		r     *rel
		order int
	}
	var cands []stopped
	for i, r := range t.releases {
		if r.state.Live() || r.run.stopping && !isClosed(r.run.stopped) || r == t.relaunching {
			continue
		}
		cands = append(cands, stopped{r, i})
	}
	slices.SortFunc(cands, func(a, b stopped) int {
		if c := b.r.stoppedAt.Compare(a.r.stoppedAt); c != 0 {
			return c
		}
		return b.order - a.order
	})
	drop := map[*rel]bool{}
	for i, c := range cands {
		tooOld := ret.MaxAgeMs > 0 && !c.r.stoppedAt.IsZero() && now.Sub(c.r.stoppedAt) > ret.MaxAge()
		if i >= ret.Keep || tooOld {
			drop[c.r] = true
		}
	}
	t.releases = slices.DeleteFunc(t.releases, func(r *rel) bool { return drop[r] })
}

// activeWeb returns r's current run when r is the active release, in is
// its proxied instance and no stop has begun: the one case in which a
// memory replacement may replace in.
func (t *table) activeWeb(r *rel, in *instance) (*run, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := r.run
	if t.active != r || l.stopping || !slices.Contains(l.procs, in) {
		return nil, false
	}
	return l, true
}

// runPorts returns a copy of the ports of run l.
func (t *table) runPorts(l *run) map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(l.ports)
}

// addExtra records in, a replacement about to start on port, as an extra
// of run l, so a stop of the run that comes meanwhile stops it too. It
// returns false (and records nothing) when that stop has begun: in must
// not start.
func (t *table) addExtra(l *run, in *instance, port int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l.stopping {
		return false
	}
	l.extras = append(l.extras, &extra{in: in, port: port})
	return true
}

// promoteExtra makes in, an extra of run l, the run's proxied instance
// (process id) on port: an adopting daemon attaches to every live copy of
// the proxied process as an extra, then keeps one (see adoptWeb).
func (t *table) promoteExtra(l *run, in *instance, id string, port int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l.extras = slices.DeleteFunc(l.extras, func(x *extra) bool { return x.in == in })
	l.procs = append(l.procs, in)
	ports := maps.Clone(l.ports)
	if ports == nil {
		ports = map[string]int{}
	}
	ports[id] = port
	l.ports = ports
}

// dropExtra forgets the extra in of run l (stopped by then).
func (t *table) dropExtra(l *run, in *instance) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l.extras = slices.DeleteFunc(l.extras, func(x *extra) bool {
		if x.in == in && x.backend != nil {
			l.requestsBefore += x.backend.Requests()
		}
		return x.in == in
	})
}

// switchWeb makes next, an extra of r's current run l, its proxied
// instance in place of old, which becomes an extra that drains (cancel
// ends its drain early), and switches the proxy to backend, next's, in the
// same section. port is next's port. It returns old's backend. It fails,
// changing nothing, unless r is still active with run l and old its
// proxied instance.
func (t *table) switchWeb(r *rel, l *run, old, next *instance, port int, backend *proxy.Backend, cancel context.CancelFunc) (*proxy.Backend, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.Index(l.procs, old)
	if t.active != r || r.run != l || l.stopping || i < 0 {
		return nil, fmt.Errorf("replace %s of release %s: the release is no longer active", old.proc.ID(), r.id)
	}
	prev := l.backend
	l.procs[i] = next
	l.extras = slices.DeleteFunc(l.extras, func(x *extra) bool { return x.in == next })
	l.extras = append(l.extras, &extra{in: old, port: l.ports[old.cfg.ID], backend: prev, cancel: cancel})
	ports := maps.Clone(l.ports)
	ports[next.cfg.ID] = port
	l.ports = ports
	l.backend = backend
	l.paused = false
	t.swap(backend)
	return prev, nil
}

// pauseWeb stops the traffic of r, whose proxied instance in exited on its
// own: when r is active, in is its proxied instance and no stop has begun,
// the proxy gets no backend (503) until resumeWeb. It returns r's run and
// whether it paused it now.
func (t *table) pauseWeb(r *rel, in *instance) (*run, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := r.run
	if t.active != r || l.stopping || l.paused || !slices.Contains(l.procs, in) {
		return nil, false
	}
	l.paused = true
	// Requests wait for the restart (up to proxy.holdTimeoutMs each)
	// instead of failing: resumeWeb's swap, or a stop's, ends the hold.
	t.pause(l.cfg.Proxy.HoldTimeout())
	return l, true
}

// endWebHold ends the hold of r's paused traffic (see pauseWeb) when in,
// its proxied instance, will not be restarted: requests get 503 at once.
func (t *table) endWebHold(r *rel, in *instance) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := r.run; t.active == r && l.paused && slices.Contains(l.procs, in) {
		t.swap(nil)
	}
}

// pausedWeb returns r's run when its traffic is paused and in is still its
// proxied instance.
func (t *table) pausedWeb(r *rel, in *instance) (*run, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := r.run
	if t.active != r || l.stopping || !l.paused || !slices.Contains(l.procs, in) {
		return nil, false
	}
	return l, true
}

// resumeWeb sends the traffic of r back to run l's backend, if it is still
// paused with in as its proxied instance. It reports whether it did.
func (t *table) resumeWeb(r *rel, l *run, in *instance) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.active != r || r.run != l || l.stopping || !l.paused || !slices.Contains(l.procs, in) {
		return false
	}
	l.paused = false
	t.swap(l.backend)
	return true
}
