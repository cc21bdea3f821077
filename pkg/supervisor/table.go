package supervisor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/release"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// table is the one owner of the supervisor's mutable state: the release
// records and their launches, the active release, the services, the
// singletons, the running-command slot and what status reports about
// restore and orphans. Its methods are the only code that writes those
// fields, and every release state change goes through setStateLocked,
// which checks it against release.CanBecome.
//
// Each method holds mu for one short section that neither blocks nor calls
// out (no process is started or stopped, nothing waits), so a reader never
// waits for a deploy, a health check or a stop sequence. Methods whose name
// ends in Locked are helpers called with mu held; none of them unlocks it.
type table struct {
	// swap is the proxy's Swap. It is called inside the section that moves
	// the active release, so the table's active release and the proxy's
	// backend always change together.
	swap func(*proxy.Backend) *proxy.Backend
	// pause is the proxy's Pause: swap(nil) that holds the requests
	// arriving meanwhile, for a proxied process that restarts.
	pause func(time.Duration) *proxy.Backend
	// routeCanary and promote are the proxy's SetCanary and Promote,
	// called like swap inside the section that changes t.canary.
	routeCanary func(*proxy.Backend, proxy.Canary) (*proxy.Backend, error)
	promote     func() *proxy.Backend

	mu       sync.Mutex
	releases []*rel // oldest first
	active   *rel
	// canary is the release in state Canary, next to active, or nil;
	// split is its share and cookie, canaryVars its release variables
	// (its singletons start from them at its promote).
	canary     *rel
	split      proxy.Canary
	canaryVars releaseVars
	services   map[string]*unit
	singletons map[string]*unit
	orphans    func() []state.Orphan // set by the state layer; nil means none
	restore    string                // why the last restore failed or was skipped ("" = fine)
	down       bool
	// running describes the mutating command in progress ("" when none);
	// opDone is closed when it ends. auto marks a command the supervisor
	// started itself (a memory replacement): commands from people wait for
	// it instead of failing (see beginOrWait).
	running string
	opDone  chan struct{}
	auto    bool
	// waiting counts the commands waiting for an automatic one to end; no
	// new automatic command starts while one waits, so a stream of them
	// cannot starve a deploy.
	waiting int
	// relaunching is the record the running rollback is about to relaunch:
	// prune leaves it alone while its old run stops.
	relaunching *rel
}

func newTable(px *proxy.Proxy) *table {
	return &table{swap: px.Swap, pause: px.Pause, routeCanary: px.SetCanary, promote: px.Promote, services: map[string]*unit{}, singletons: map[string]*unit{}}
}

// rel is one release record. id, path, revision and createdAt never change;
// every other field belongs to the table.
type rel struct {
	id, path, revision string
	createdAt          time.Time

	state          release.State
	activatedAt    time.Time
	drainStartedAt time.Time
	stoppedAt      time.Time
	lastError      string
	run            *run // the current launch; never nil
	// before is what a rollback's relaunch replaced: the record as it was
	// retained. A relaunch that fails puts it back, so a failed rollback
	// costs no rollback target. nil unless a relaunch is under way.
	before *retained
	// replaced is the stopped record with the same id that add replaced in
	// its place; fail puts it back. nil otherwise.
	replaced *rel
	// canaried: it ran as a canary. One aborted drained without ever
	// being active, so it is no rollback target.
	canaried bool
}

// retained is the part of a stopped record a relaunch resets.
type retained struct {
	activatedAt, drainStartedAt, stoppedAt time.Time
	run                                    *run
}

// run is one launch of a release record and what it started. A rollback
// relaunches a record with a new run, and only once the old run is fully
// stopped (relaunch checks it). Whatever still holds an old run — the drain
// goroutine of a release that was rolled back to — can therefore only ever
// stop that old run, which is already stopped: a late drain completion
// cannot touch the relaunched release. This replaces launch generation
// counters.
type run struct {
	cfg     *config.Config // the config this launch started with; never changes
	stopped chan struct{}  // closed once the run's stop finished

	ports       map[string]int
	procs       []*instance
	backend     *proxy.Backend
	drainCancel context.CancelFunc
	stopping    bool // a stop is in progress or done
	// paused: the proxied process of this active run exited and the proxy
	// sends no traffic to its port until it is back and still its own
	// (crash.go).
	paused bool
	// extras are proxied instances of this run that take no new traffic:
	// the replacement of a memory replacement while it starts, and the
	// instance it replaced while that drains (replace.go). They are not
	// in procs; a stop of the run stops them too.
	extras []*extra
	// requestsBefore counts the requests served by the backends of extras
	// that were dropped, so the run's request total never goes back.
	requestsBefore uint64
}

// extra is an instance of a run outside its procs (see run.extras).
type extra struct {
	in      *instance
	port    int                // the port it listens on, for the state file
	backend *proxy.Backend     // the replaced instance's, while it drains; nil for a starting replacement
	cancel  context.CancelFunc // ends that drain early; nil for a starting replacement
}

func newRun(cfg *config.Config) *run { return &run{cfg: cfg, stopped: make(chan struct{})} }

// instance is one managed process of a release. Its fields never change;
// retry locks for itself.
type instance struct {
	cfg     *config.Process
	replica int
	proc    *process.Process
	retry   *backoff // the proxied instance's memory replacements (replace.go); nil for others
}

// unit is a service or a singleton: one daemon-level managed process. cfg,
// proc and port never change; releaseID belongs to the table.
type unit struct {
	cfg       *config.Process
	proc      *process.Process
	port      int
	releaseID string // the release whose template it runs
}

// beginAuto takes the slot for a command the supervisor starts itself.
func (t *table) beginAuto(what string) error {
	_, err := t.take(what, true, false)
	return err
}

// beginOrWait takes the slot for a command someone asked for: a second
// such command fails at once, naming the one that runs, but while an
// automatic command runs it returns that command's done channel instead:
// the caller waits for it, calls doneWaiting, and tries again.
func (t *table) beginOrWait(what string) (<-chan struct{}, error) { return t.take(what, false, true) }

// doneWaiting ends a wait that beginOrWait asked for.
func (t *table) doneWaiting() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiting--
}

func (t *table) take(what string, auto, waitAuto bool) (<-chan struct{}, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down {
		return nil, refuse(ErrShuttingDown, "the daemon is shutting down")
	}
	if t.running != "" && t.auto && waitAuto {
		t.waiting++
		return t.opDone, nil
	}
	if auto && t.waiting > 0 {
		return nil, refuse(ErrBusy, "a command waits for the slot")
	}
	if t.running != "" {
		return nil, refuse(ErrBusy,
			"another command is running: %s; wait for it to finish (rollbridgectl status shows it) and try again", t.running)
	}
	t.running = fmt.Sprintf("%s (started %s)", what, time.Now().UTC().Format(time.RFC3339))
	t.opDone = make(chan struct{})
	t.auto = auto
	return nil, nil
}

// end frees the slot taken by begin.
func (t *table) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.running = ""
	t.auto = false
	t.relaunching = nil
	close(t.opDone)
	t.opDone = nil
}

// shutdown refuses every later command. first is false if it was called
// before; wait, if not nil, is closed when the running command ends.
func (t *table) shutdown() (wait <-chan struct{}, first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down {
		return nil, false
	}
	t.down = true
	if t.opDone != nil {
		wait = t.opDone
	}
	return wait, true
}

func (t *table) setOrphans(f func() []state.Orphan) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.orphans = f
}

func (t *table) setRestoreProblem(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.restore = msg
}

// setStateLocked moves r to next if the transition table allows it; if not,
// r is left as it is.
func (t *table) setStateLocked(r *rel, next release.State) error {
	if err := release.Transition(r.state, next); err != nil {
		return fmt.Errorf("release %s: %w", r.id, err)
	}
	r.state = next
	return nil
}

func (t *table) findLocked(id string) *rel {
	for _, r := range t.releases {
		if r.id == id {
			return r
		}
	}
	return nil
}

func (t *table) retainedIDsLocked() string {
	out := ""
	for _, r := range t.releases {
		if out != "" {
			out += ", "
		}
		out += r.id
	}
	if out == "" {
		return "none"
	}
	return out
}

// service returns the service with base id id, or nil.
func (t *table) service(id string) *unit {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.services[id]
}

func (t *table) setService(u *unit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.services[u.cfg.ID] = u
}

// serviceUnits returns the services, in no particular order.
func (t *table) serviceUnits() []*unit {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*unit, 0, len(t.services))
	for _, u := range t.services {
		out = append(out, u)
	}
	return out
}

// setUnitRelease records that u now restarts from release id's template.
func (t *table) setUnitRelease(u *unit, id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u.releaseID = id
}

// singleton returns the singleton with id, or nil.
func (t *table) singleton(id string) *unit {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.singletons[id]
}

func (t *table) setSingleton(u *unit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.singletons[u.cfg.ID] = u
}

// dropSingletonsExcept takes every singleton whose id is not in wanted out
// of the table and returns them for the caller to stop.
func (t *table) dropSingletonsExcept(wanted map[string]bool) []*unit {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []*unit
	for id, u := range t.singletons {
		if !wanted[id] {
			gone = append(gone, u)
			delete(t.singletons, id)
		}
	}
	return gone
}

// everything returns every release record and every service and singleton,
// for Shutdown.
func (t *table) everything() ([]*rel, []*unit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	units := make([]*unit, 0, len(t.services)+len(t.singletons))
	for _, u := range t.singletons {
		units = append(units, u)
	}
	for _, u := range t.services {
		units = append(units, u)
	}
	return append([]*rel(nil), t.releases...), units
}

// addBackground adds one to wg unless the supervisor is shutting down, so
// a goroutine started from a process's own goroutines (which may run at
// any moment) is either waited for by Shutdown or not started at all.
func (t *table) addBackground(wg *sync.WaitGroup) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down {
		return false
	}
	wg.Add(1)
	return true
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
