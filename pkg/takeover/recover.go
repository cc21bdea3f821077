package takeover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/pgroup"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// RecoverResult is what Recover found and did.
type RecoverResult struct {
	StatePath        string         `json:"statePath"`
	Orphans          []state.Orphan `json:"orphans"`      // recorded processes still running
	Stopped          []state.Orphan `json:"stopped"`      // with force: the ones now gone
	StillRunning     []state.Orphan `json:"stillRunning"` // with force: the ones that survived
	StateFileRemoved bool           `json:"stateFileRemoved"`
	DryRun           bool           `json:"dryRun"` // force was not set: nothing was touched
	// NodeStateFile: the file was the Node original's (its processes are
	// recovered the same way).
	NodeStateFile bool `json:"nodeStateFile,omitempty"`
}

// Recover lists the processes a crashed daemon left running — recorded in
// cfg.StatePath (same pid and start time; the Node original's state file
// is read too, see state.Read), and those carrying the run token of a
// daemon instance the file records (state.Snapshot.FindOrphans: processes
// that left their group with setsid, or started after the daemon's last
// write; only processes of the users the daemon could have run them as)
// — and, with force, stops each one's process group, or the process
// alone when it leads none (SIGTERM, SIGKILL after
// proxy.forceStopTimeoutMs), and removes the state file — unless one
// survived, when the file is kept for another look. It refuses while
// anything listens on the control socket: a live daemon's processes are
// not orphans.
func Recover(ctx context.Context, cfg *config.Config, force bool) (*RecoverResult, error) {
	return recoverWith(ctx, cfg, force, pgroup.Stop)
}

// maxRecoverRounds bounds how often Recover looks again for processes
// that appeared while it stopped the others.
const maxRecoverRounds = 3

// stopFunc is pgroup.Stop's signature; tests stand in for a process that
// cannot be stopped, which cannot be staged for real when running as root.
type stopFunc func(ctx context.Context, targets []pgroup.Target, grace time.Duration) []pgroup.Result

func recoverWith(ctx context.Context, cfg *config.Config, force bool, stop stopFunc) (*RecoverResult, error) {
	if cfg.StatePath == "" {
		return nil, errors.New("no statePath is configured; set statePath in the config to enable recovery")
	}
	res := &RecoverResult{StatePath: cfg.StatePath, Orphans: []state.Orphan{}, Stopped: []state.Orphan{}, StillRunning: []state.Orphan{}, DryRun: !force}
	snap, err := state.Read(cfg.StatePath)
	if err == nil && snap.Node != nil {
		// The Node original's file belongs to the Node daemon, whose socket
		// it names; rollbridged may run meanwhile (a switch-over), and its
		// processes are not in this file.
		res.NodeStateFile = true
		if p := snap.Node.ControlPath; p != "" && (&control.Client{Path: p}).Listening(ctx) {
			return nil, fmt.Errorf("%s is the Node rollbridge daemon's state file, and that daemon still runs on %s; stop it (rollbridge shutdown, or its unit) before recovering", cfg.StatePath, p)
		}
	} else if (&control.Client{Path: cfg.Control.Path}).Listening(ctx) {
		return nil, fmt.Errorf("a daemon (or another process) is using %s; stop it before recovering — recover is for cleaning up after a crash", cfg.Control.Path)
	}
	if errors.Is(err, os.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	uids := state.LookupUIDs(cfg.Users())
	res.Orphans = snap.FindOrphans(uids)
	if !force {
		return res, nil
	}
	// A process being stopped may start another (a trap, a supervisor of
	// its own) with the same token: look again after each round, and stop
	// what is new, a few times at most.
	type key struct {
		pid   int
		start uint64
	}
	tried := map[key]bool{}
	batch := res.Orphans
	for round := 0; len(batch) > 0; round++ {
		targets := make([]pgroup.Target, len(batch))
		for i, o := range batch {
			tried[key{o.Pid, o.StartTime}] = true
			targets[i] = pgroup.Target{Pid: o.Pid, StartTime: o.StartTime, Group: o.Group}
		}
		for i, r := range stop(ctx, targets, cfg.Proxy.ForceStopTimeout()) {
			if r.Gone {
				res.Stopped = append(res.Stopped, batch[i])
			} else {
				res.StillRunning = append(res.StillRunning, batch[i])
			}
		}
		var next []state.Orphan
		for _, o := range snap.FindOrphans(uids) {
			if !tried[key{o.Pid, o.StartTime}] {
				next = append(next, o)
			}
		}
		if round == maxRecoverRounds-1 {
			res.StillRunning = append(res.StillRunning, next...) // found, never stopped
			res.Orphans = append(res.Orphans, next...)
			break
		}
		res.Orphans = append(res.Orphans, next...)
		batch = next
	}
	if len(res.StillRunning) == 0 {
		if err := state.Remove(cfg.StatePath); err != nil {
			return nil, err // an *os.PathError: it names the operation and the file
		}
		res.StateFileRemoved = true
	}
	return res, nil
}
