package supervisor

import (
	"os"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/release"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// PersistSnapshot describes what runs now, for the state file. It copies
// the table in one short section; /proc is read outside it.
func (s *Supervisor) PersistSnapshot() *state.Snapshot {
	type proc struct {
		p         *process.Process
		processID string
		releaseID string
		policy    string
		port      int
	}
	snap := &state.Snapshot{Application: s.cfg.Load().Application, SavedAt: time.Now().UTC(), DaemonPid: os.Getpid()}
	var procs []proc
	v := s.tab.view()
	if r := v.activeRelease(); r != nil {
		snap.ActiveReleaseID = r.id
	}
	for _, r := range v.releases {
		if r.state == release.Failed {
			continue // never served; nothing to restore or roll back to
		}
		snap.Releases = append(snap.Releases, state.ReleaseRecord{ID: r.id, Path: r.path, Revision: r.revision, State: string(r.state),
			ActivatedAt: r.activatedAt.UTC(), RetiredAt: r.retiredAt().UTC(), Ports: r.ports})
		// Extras too: a replaced proxied instance still draining is a
		// process of the release that an orphan check must know. Each
		// proxied instance records its own port: while a replacement
		// runs beside the instance it replaces, a daemon that adopts
		// them must be able to check and serve either (see Adopt).
		for _, in := range r.procs {
			port := 0
			if in.cfg.Policy == config.Proxied {
				port = r.ports[in.cfg.ID]
			}
			procs = append(procs, proc{in.proc, in.cfg.ID, r.id, string(in.cfg.Policy), port})
		}
		for i, in := range r.extras {
			procs = append(procs, proc{in.proc, in.cfg.ID, r.id, string(in.cfg.Policy), r.extraPorts[i]})
		}
	}
	// Services and singletons are recorded without a release: they outlive
	// the one that started them, and an orphan of theirs lists none, as in
	// the Node original.
	for _, u := range v.services {
		procs = append(procs, proc{u.proc, u.cfg.ID, "", "service", u.port})
	}
	for _, u := range v.singletons {
		procs = append(procs, proc{u.proc, u.cfg.ID, "", "singleton", u.port})
	}
	snap.Processes = []state.ProcessRecord{}
	for _, p := range procs {
		b := p.p.Brief()
		if b.Pid == 0 {
			continue
		}
		start, err := state.StartTime(b.Pid)
		if err != nil {
			continue // exited a moment ago
		}
		snap.Processes = append(snap.Processes, state.ProcessRecord{ID: b.ID, ProcessID: p.processID, ReleaseID: p.releaseID,
			Policy: p.policy, Pid: b.Pid, StartTime: start, Restarts: b.Restarts, MemoryRestarts: b.MemoryRestarts,
			Port: p.port, StartedAt: b.StartedAt})
	}
	snap.Events = s.events.Recent(state.MaxEvents)
	return snap
}
