package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"github.com/rollbridge/rollbridge-go/pkg/supervisor"
)

// A failed state save is tried again after saveRetryMin, then after twice
// as long each time, up to saveRetryMax. Successful saves need no timer:
// every change that the state file records (a process started, a release
// switched or stopped) is an event, and every event marks the state dirty.
const (
	saveRetryMin = time.Second
	saveRetryMax = time.Minute
)

// previous is what a starting daemon learnt from the state file it found,
// and the instance it records for itself. A nil *previous (no statePath)
// is valid for its methods.
type previous struct {
	// snap is the snapshot read; nil when there was none (or it could
	// not be used).
	snap *state.Snapshot
	// orphans are the processes of earlier daemons that ran at the start
	// (snap.FindOrphans, read once): recorded, or found by their run
	// token. Empty under an adopting runner, which decides about them.
	orphans []state.Orphan
	// earlier are the instances of earlier daemons that still had a
	// process at the start: the state file keeps them while this daemon
	// runs, so recover still finds those processes after a crash.
	earlier []string
	// own is this daemon's instance.
	own string
	// hostDrained reads whether the host is drained now and since when,
	// for the state file; nil records false.
	hostDrained func() (time.Time, bool)

	// maintenance, once set, is the maintenance in force, which every
	// snapshot records.
	maintenance func() *state.Maintenance
}

// maintenanceAtStart is the maintenance the previous daemon recorded.
func (p *previous) maintenanceAtStart() *state.Maintenance {
	if p == nil || p.snap == nil {
		return nil
	}
	return p.snap.Maintenance
}

// live returns the orphans still running (pid and start time): status
// asks at every call, so this reads only their pids, never the host.
func (p *previous) live() []state.Orphan {
	out := []state.Orphan{}
	if p == nil {
		return out
	}
	for _, o := range p.orphans {
		if state.Alive(o.Pid, o.StartTime) {
			out = append(out, o)
		}
	}
	return out
}

// record completes a snapshot of this daemon for the state file: the
// still-running recorded processes of the earlier daemon, so a later
// daemon — or rollbridgectl recover — still knows about them until they
// are gone, and the instances whose processes may run (this daemon's, and
// the earlier ones').
func (p *previous) record(snap *state.Snapshot) *state.Snapshot {
	if p == nil || snap == nil {
		return snap
	}
	if p.snap != nil {
		for _, r := range p.snap.Processes {
			if state.Alive(r.Pid, r.StartTime) {
				snap.Processes = append(snap.Processes, r)
			}
		}
	}
	snap.Instances = append([]string{p.own}, p.earlier...)
	if p.hostDrained != nil {
		snap.HostDrainedSince, snap.HostDrained = p.hostDrained()
	}

	if p.maintenance != nil {
		snap.Maintenance = p.maintenance()
	}
	return snap
}

// loadState reads a leftover state file, looks for orphans (once: see
// state.Snapshot.FindOrphans), reports them and installs the live orphan
// check for status. It never returns a nil *previous without an error.
//
// A state file of the Node original is never overwritten while it matters:
// if its daemon still answers on its control socket, or any process it
// lists still runs, the start fails with what to do (rollbridged would
// otherwise replace the only record of those processes, and two daemons
// would write one file). A Node file whose processes are all gone is
// replaced by rollbridged's own, and the event says so; nothing of it is
// restored (its releases were the Node daemon's to run).
//
// Under a runner whose runs outlive the daemon (adoptable), the recorded
// processes that still run are the ones to adopt, not orphans: the
// snapshot's process list is handed to adopt and then dropped, so neither
// restore nor the state file treat them as leftovers.
func loadState(ctx context.Context, cfg *config.Config, log *events.Log, sup *supervisor.Supervisor, adoptable bool) (*previous, error) {
	snap, err := state.Read(cfg.StatePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &previous{}, nil
	case err != nil: // torn, foreign or unreadable: reported, then ignored and overwritten
		log.Emit(events.StateFileUnreadable, map[string]any{events.KeyPath: cfg.StatePath, events.KeyError: err.Error()})
		return &previous{}, nil
	case snap.Node != nil:
		if err := nodeStateFile(ctx, cfg, snap, log); err != nil {
			return nil, err
		}
		return &previous{}, nil // replaced by this daemon's file
	}
	log.Restore(snap.Events)
	found := snap.FindOrphans(state.LookupUIDs(cfg.Users()))
	prev := &previous{snap: snap, earlier: state.LiveInstances(found)}
	if adoptable {
		return prev, nil
	}
	prev.orphans = found
	sup.SetOrphans(prev.live) // re-checked on every status: the list clears itself
	if len(found) > 0 {
		log.Emit(events.OrphanedProcessesFound, map[string]any{"orphans": found, events.KeyCount: len(found),
			"hint": "a previous daemon left these running; check them, then stop them with rollbridgectl recover --force"})
	}
	return prev, nil
}

// firstWrite records this daemon's instance in the state file before it
// starts any process, keeping what the previous snapshot recorded (its
// releases, its processes: adopt and restore still read them from
// prev.snap, and a daemon killed before its next write leaves them in
// the file). A failure is reported like any failed save (once per cause:
// the error goes on to persistLoop, which retries) and does not stop the
// start.
func firstWrite(cfg *config.Config, prev *previous, log *events.Log) error {
	snap := &state.Snapshot{Application: cfg.Application, Releases: []state.ReleaseRecord{}, Processes: []state.ProcessRecord{}}
	if prev.snap != nil {
		c := *prev.snap
		snap = &c
	}
	snap.SavedAt = time.Now().UTC()
	snap.DaemonPid = os.Getpid()
	// Processes may start from now on: nothing says they were stopped.
	snap.Stopped = false
	snap.Instances = append([]string{prev.own}, prev.earlier...)
	snap.Events = log.Recent(state.MaxEvents)
	err := state.Save(cfg.StatePath, snap)
	if err != nil {
		reportSaveFailure(log, cfg.StatePath, err)
	}
	return err
}

// reportSaveFailure emits the one report of a cause of failed saves.
func reportSaveFailure(log *events.Log, path string, err error) {
	log.Emit(events.StateSaveFailed, map[string]any{events.KeyPath: path, events.KeyError: err.Error(),
		events.KeyHint: "the daemon keeps running and retries, at most a minute apart; this is reported once per cause (until a save succeeds, rollbridgectl recover may not find what this daemon starts)"})
}

// nodeStateFile decides about a Node original's state file at statePath:
// an error (refuse to start) while its daemon or its processes live, else
// an event saying it will be replaced.
func nodeStateFile(ctx context.Context, cfg *config.Config, prev *state.Snapshot, log *events.Log) error {
	if p := prev.Node.ControlPath; p != "" && p != cfg.Control.Path && (&control.Client{Path: p}).Listening(ctx) {
		return fmt.Errorf("statePath %s is the Node rollbridge daemon's state file, and that daemon still runs on %s: "+
			"give rollbridged another statePath until the Node daemon is stopped", cfg.StatePath, p)
	}
	if orphans := prev.Orphans(); len(orphans) > 0 {
		list := make([]string, len(orphans))
		for i, o := range orphans {
			list[i] = fmt.Sprintf("%s (pid %d)", o.ID, o.Pid)
		}
		return fmt.Errorf("statePath %s is the Node rollbridge daemon's state file, and %d of its processes still run: %s; "+
			"stop the Node daemon (rollbridge shutdown) or run rollbridgectl recover --force, then start rollbridged again",
			cfg.StatePath, len(orphans), strings.Join(list, ", "))
	}
	log.Emit(events.StateFileUnreadable, map[string]any{events.KeyPath: cfg.StatePath,
		events.KeyError: "a state file of the Node rollbridge daemon, none of whose processes still runs; it is replaced by rollbridged's own"})
	return nil
}

// adopt re-attaches to the units the previous daemon left running (see
// supervisor.Adopt) and reports whether a release serves again; if not,
// the caller restores. Either way prev's process list is used up.
func adopt(ctx context.Context, prev *state.Snapshot, log *events.Log, sup *supervisor.Supervisor) bool {
	if prev == nil || prev.Stopped {
		// The previous daemon stopped everything on purpose (systemctl
		// stop, a reboot): nothing to adopt, and nothing "died" either;
		// restore starts the release afresh, health-checked.
		return false
	}
	res, err := sup.Adopt(ctx, prev)
	prev.Processes = nil // adopted, restarted, stopped or failed: none is a leftover now
	orphans := make([]state.Orphan, 0, len(res.Orphans))
	for _, o := range res.Orphans {
		orphans = append(orphans, state.Orphan{ID: o.InstanceID, Pid: o.Pid, ReleaseID: o.ReleaseID})
	}
	sup.SetOrphans(func() []state.Orphan {
		live := []state.Orphan{}
		for _, o := range orphans {
			if state.Alive(o.Pid, 0) {
				live = append(live, o)
			}
		}
		return live
	})
	if err != nil {
		log.Emit(events.RestoreFailed, map[string]any{events.KeyReleaseID: prev.ActiveReleaseID, events.KeyError: err.Error(),
			events.KeyHint: "falling back to restoring the release from scratch"})
		return false
	}
	return res.ActiveReleaseID != ""
}

// restore redeploys the release that was active when the previous daemon
// stopped, through the normal health-checked deploy; if that fails, the
// previously active retained releases, newest first. It returns why
// nothing serves ("" when a release was restored or none was recorded),
// which status shows too.
func restore(ctx context.Context, cfg *config.Config, p *previous, log *events.Log, sup *supervisor.Supervisor, notifier Notifier) string {
	prev := p.snap
	if prev == nil || prev.ActiveReleaseID == "" || !cfg.RestoreOnStart {
		return ""
	}
	if orphans := p.live(); len(orphans) > 0 {
		msg := fmt.Sprintf("release %s was not restored: %d processes of the previous daemon still run; run rollbridgectl recover, then restart the daemon",
			prev.ActiveReleaseID, len(orphans))
		sup.SetRestoreProblem(msg)
		log.Emit(events.RestoreSkipped, map[string]any{events.KeyReleaseID: prev.ActiveReleaseID, events.KeyReason: msg})
		return msg
	}
	var candidates []state.ReleaseRecord
	var others []state.ReleaseRecord
	for _, r := range prev.Releases {
		switch {
		case r.ID == prev.ActiveReleaseID:
			candidates = append(candidates, r)
		case !r.ActivatedAt.IsZero():
			others = append(others, r)
		}
	}
	sort.Slice(others, func(i, j int) bool { return others[i].RetiredAt.After(others[j].RetiredAt) })
	candidates = append(candidates, others...)
	var failures []string
	// Each attempt may take a whole health-check window; tell systemd, so
	// its start timeout does not kill a restore that is making progress.
	attempt := cfg.Proxy.HealthTimeout() + 30*time.Second
	if p := cfg.Proxied(); p != nil && p.Health != nil {
		attempt = p.Health.Timeout() + p.Health.StartDelay() + 30*time.Second
	}
	for _, r := range candidates {
		notifier.ExtendTimeout(attempt)
		log.Emit(events.RestoreStarting, map[string]any{events.KeyReleaseID: r.ID, "releasePath": r.Path})
		_, err := sup.Deploy(ctx, supervisor.DeployRequest{ReleasePath: r.Path, ReleaseID: r.ID, Revision: r.Revision}, nil)
		if err == nil {
			log.Emit(events.ReleaseRestored, map[string]any{events.KeyReleaseID: r.ID, "wasActive": r.ID == prev.ActiveReleaseID})
			if r.ID != prev.ActiveReleaseID {
				why := "it was not recorded"
				if len(failures) > 0 {
					why = failures[0]
				}
				sup.SetRestoreProblem(fmt.Sprintf("release %s could not be restored (%s); serving the previous release %s", prev.ActiveReleaseID, why, r.ID))
			}
			return ""
		}
		failures = append(failures, fmt.Sprintf("%s: %v", r.ID, err))
		if ctx.Err() != nil {
			break
		}
	}
	msg := "nothing could be restored; the proxy answers 503 until the next deploy: " + strings.Join(failures, "; ")
	sup.SetRestoreProblem(msg)
	log.Emit(events.RestoreFailed, map[string]any{events.KeyReleaseID: prev.ActiveReleaseID, events.KeyError: msg})
	return msg
}

// persistLoop writes the state file after every change. Nothing wakes it
// while nothing changes.
//
// A failed write (full disk, read-only directory, a directory in the way)
// never stops the daemon. Each cause — the error's text, which state.Save
// keeps free of random temporary names — is reported once until a save
// succeeds again, and the save is retried with backoff (saveRetryMin
// doubling to saveRetryMax). While a retry is pending, changes wait for
// it instead of triggering saves of their own; the retry writes them all.
// That includes the "state save failed" event itself, which like every
// event marks the state dirty: a failure that triggered the next attempt
// at once would fail, report, and trigger again, thousands of times a
// second when each report reads differently.
//
// firstErr is how the daemon's first write failed (nil: it succeeded); its
// cause counts as reported, and a retry is due.
func persistLoop(ctx context.Context, path string, dirty <-chan struct{}, log *events.Log, sup *supervisor.Supervisor, prev *previous, firstErr error) {
	var (
		lastSaved string
		failing   bool
		reported  = map[string]bool{} // causes reported since the last successful save
		backoff   time.Duration
		retry     <-chan time.Time // set exactly while failing
	)
	if firstErr != nil {
		failing, backoff = true, saveRetryMin
		reported[firstErr.Error()] = true
		retry = time.After(backoff)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-dirty:
			if retry != nil {
				continue // the pending retry saves this change too
			}
		case <-retry:
			retry = nil
		}
		snap := prev.record(sup.PersistSnapshot())
		content := contentKey(snap)
		if content != "" && content == lastSaved && !failing {
			continue // an event already in the last save (its dirty mark can trail the save)
		}
		err := state.Save(path, snap)
		if err == nil {
			lastSaved = content
			if failing {
				failing, backoff = false, 0
				clear(reported)
				log.Emit(events.StateSavedAgain, map[string]any{events.KeyPath: path})
			}
			continue
		}
		failing = true
		backoff = min(max(2*backoff, saveRetryMin), saveRetryMax)
		retry = time.After(backoff)
		if cause := err.Error(); !reported[cause] {
			reported[cause] = true
			reportSaveFailure(log, path, err)
		}
	}
}

// contentKey is what a snapshot records, without the moment it was taken:
// two snapshots with the same key need not both be written.
func contentKey(s *state.Snapshot) string {
	c := *s
	c.SavedAt = time.Time{}
	b, err := json.Marshal(&c)
	if err != nil {
		return "" // never equal to a real key: the save goes ahead and reports the error
	}
	return string(b)
}
