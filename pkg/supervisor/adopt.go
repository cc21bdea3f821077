package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/release"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// AdoptResult says what Adopt found.
type AdoptResult struct {
	// ActiveReleaseID is the release that serves again, "" when none was
	// adopted (then the caller restores or waits for a deploy).
	ActiveReleaseID string
	Adopted         []string // instance ids attached to without a restart
	Restarted       []string // instance ids that had died while no daemon watched, started again by their restart policy
	Failed          []string // instance ids that had died and may not restart (or could not)
	Stopping        []string // ids of runs of a release that was draining, now stopped with their stop sequence
	Orphans         []process.RunRef
}

// Adopt re-attaches to what the previous daemon, whose last state is snap,
// left running under a runner whose runs outlive the daemon (systemd
// units): the active release's processes, the services and singletons.
// Nothing that runs is restarted; the proxy points at the active release
// again as soon as its proxied process is attached. Processes that died
// while no daemon watched are handled by their restart policy, started
// from the current config rendered with the release's recorded path, id,
// revision and ports. A release that was draining has lost its proxied
// connections with the old daemon: its processes get their stop sequence
// in the background. Runs that no record accounts for are returned as
// orphans and left alone.
//
// It does nothing (and returns an empty result) when the runner cannot
// adopt or snap names no active release; an error means the active release
// could not be brought back, and whatever was attached is stopped again.
func (s *Supervisor) Adopt(ctx context.Context, snap *state.Snapshot) (*AdoptResult, error) {
	res := &AdoptResult{}
	ad, ok := s.runner.(process.Adopter)
	if !ok || snap == nil {
		return res, nil
	}
	runs, err := ad.Runs(ctx)
	if err != nil {
		return res, fmt.Errorf("adopt: %w", err)
	}
	if err := s.tab.beginAuto("adopt"); err != nil {
		return res, err
	}
	defer s.tab.end()
	cfg := s.cfg.Load()
	known := map[string]bool{} // "release/instance" of every run accounted for
	records := map[string]state.ProcessRecord{}
	for _, p := range snap.Processes {
		// The first record of an instance is the one that serves: a
		// replaced proxied instance still draining comes after it.
		if k := recordKey(p.Policy, p.ReleaseID, p.ID); records[k].ID == "" {
			records[k] = p
		}
	}
	byID := map[string]state.ReleaseRecord{}
	for _, r := range snap.Releases {
		byID[r.ID] = r
	}

	var activeRV *releaseVars
	if rec, ok := byID[snap.ActiveReleaseID]; ok && snap.ActiveReleaseID != "" {
		rv := releaseVars{ID: rec.ID, Path: rec.Path, Revision: rec.Revision, Ports: map[string]int{}}
		for k, v := range rec.Ports {
			rv.Ports[k] = v
		}
		for _, p := range snap.Processes {
			if p.Port != 0 {
				rv.Ports[p.ProcessID] = p.Port
			}
		}
		activeRV = &rv
		if err := s.adoptRelease(ctx, cfg, rv, records, known, res); err != nil {
			return res, err
		}
		s.adoptUnits(ctx, cfg, rv, snap.Processes, known, res)
	}
	// Releases that were draining: their connections went with the old
	// proxy, so the drain is over; their processes still get the stop
	// sequence (hooks and all).
	for _, rec := range snap.Releases {
		if rec.State != string(release.Draining) || rec.ID == snap.ActiveReleaseID {
			continue
		}
		rv := releaseVars{ID: rec.ID, Path: rec.Path, Revision: rec.Revision, Ports: rec.Ports}
		s.stopDrained(ctx, cfg, rv, records, known, res)
	}
	for _, run := range runs {
		if !known[run.ReleaseID+"/"+run.InstanceID] {
			res.Orphans = append(res.Orphans, run)
		}
	}
	if len(res.Orphans) > 0 {
		names := make([]string, len(res.Orphans))
		for i, o := range res.Orphans {
			names[i] = o.Name
		}
		sort.Strings(names)
		s.emit(events.OrphanedUnitsFound, map[string]any{"units": names, events.KeyCount: len(names),
			events.KeyHint: "no recorded release or service accounts for them; stop them with systemctl stop UNIT when they are not needed"})
	}
	if activeRV != nil && res.ActiveReleaseID != "" {
		s.emit(events.ReleaseAdopted, map[string]any{events.KeyReleaseID: res.ActiveReleaseID,
			"adopted": res.Adopted, "restarted": res.Restarted, "failed": res.Failed})
	}
	return res, nil
}

func recordKey(policy, releaseID, instanceID string) string {
	if policy == string(config.Service) || policy == string(config.Singleton) {
		releaseID = ""
	}
	return releaseID + "/" + instanceID
}

// adoptRelease attaches to the companions and the proxied process of the
// active release rv and makes it active again.
func (s *Supervisor) adoptRelease(ctx context.Context, cfg *config.Config, rv releaseVars, records map[string]state.ProcessRecord,
	known map[string]bool, res *AdoptResult) error {
	r := s.tab.add(rv.ID, rv.Path, rv.Revision, cfg)
	s.tab.setPorts(r, releasePorts(cfg, rv.Ports))
	var web *instance
	for i := range cfg.Processes {
		p := &cfg.Processes[i]
		if p.Policy != config.Proxied && p.Policy != config.Companion {
			continue
		}
		for rep := 0; rep < max(p.Replicas, 1); rep++ {
			spec, err := s.instanceSpec(cfg, p, rv, rep)
			if err != nil {
				return s.failAdopt(r, err)
			}
			in := s.newInstance(r, p, rep, spec, nil)
			s.tab.addInstance(r, in)
			key := rv.ID + "/" + spec.ID
			known[key] = true
			rec := records[key]
			restarted, err := in.proc.Adopt(ctx, process.Adopted{StartedAt: rec.StartedAt, Restarts: rec.Restarts, MemoryRestarts: rec.MemoryRestarts})
			switch {
			case err != nil:
				res.Failed = append(res.Failed, spec.ID)
			case restarted:
				res.Restarted = append(res.Restarted, spec.ID)
			default:
				res.Adopted = append(res.Adopted, spec.ID)
			}
			if p.Policy == config.Proxied {
				web = in
				if err != nil {
					return s.failAdopt(r, fmt.Errorf("proxied process %s: %w", spec.ID, err))
				}
			}
		}
	}
	if web == nil {
		return s.failAdopt(r, errors.New("the config has no proxied process"))
	}
	host, port := cfg.Proxy.UpstreamHost, rv.Ports[web.cfg.ID]
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	// Started anew, it takes traffic once healthy, as in a deploy; found
	// alive, it still has to pass the checks a deploy makes (health, and
	// the listener held by the release's own processes) before traffic
	// goes to it, which for a live process is one round trip.
	if err := s.waitReady(ctx, r, web, host, port, nil); err != nil {
		return s.failAdopt(r, err)
	}
	if err := s.tab.activate(r, proxy.NewBackend(r.id, addr)); err != nil {
		return s.failAdopt(r, err)
	}
	res.ActiveReleaseID = r.id
	return nil
}

// failAdopt stops what was attached of r and records it failed.
func (s *Supervisor) failAdopt(r *rel, cause error) error {
	stopErr := s.stopRelease(r)
	if err := errors.Join(stopErr, s.tab.fail(r, nil)); err != nil {
		s.internalError(err)
	}
	return fmt.Errorf("adopt release %s: %w", r.id, cause)
}

// adoptUnits attaches to the recorded services and singletons, then starts
// the configured services that are not running, as a deploy would.
func (s *Supervisor) adoptUnits(ctx context.Context, cfg *config.Config, rv releaseVars, recs []state.ProcessRecord, known map[string]bool, res *AdoptResult) {
	for _, rec := range recs {
		if rec.Policy != string(config.Service) && rec.Policy != string(config.Singleton) {
			continue
		}
		p := cfg.ProcessByID(rec.ProcessID)
		if p == nil || string(p.Policy) != rec.Policy {
			continue // gone from the config: an orphan now
		}
		spec, err := s.instanceSpec(cfg, p, rv, 0)
		if err != nil {
			res.Failed = append(res.Failed, rec.ID)
			continue
		}
		known["/"+spec.ID] = true
		u := &unit{cfg: p, proc: s.newProcess(spec), port: rec.Port, releaseID: rv.ID}
		restarted, err := u.proc.Adopt(ctx, process.Adopted{StartedAt: rec.StartedAt, Restarts: rec.Restarts, MemoryRestarts: rec.MemoryRestarts})
		switch {
		case err != nil:
			res.Failed = append(res.Failed, spec.ID)
		case restarted:
			res.Restarted = append(res.Restarted, spec.ID)
		default:
			res.Adopted = append(res.Adopted, spec.ID)
		}
		if p.Policy == config.Service {
			s.tab.setService(u)
		} else {
			s.tab.setSingleton(u)
		}
	}
	if _, err := s.ensureServices(ctx, cfg, rv, nil); err != nil {
		s.emit(events.ProcessRestartFailed, map[string]any{events.KeyReleaseID: rv.ID, events.KeyError: err.Error()})
	}
}

// stopDrained attaches to the live processes of a release that was
// draining and stops them in the background with their stop sequence.
func (s *Supervisor) stopDrained(ctx context.Context, cfg *config.Config, rv releaseVars, records map[string]state.ProcessRecord, known map[string]bool, res *AdoptResult) {
	var procs []*process.Process
	for i := range cfg.Processes {
		p := &cfg.Processes[i]
		if p.Policy != config.Proxied && p.Policy != config.Companion {
			continue
		}
		for rep := 0; rep < max(p.Replicas, 1); rep++ {
			spec, err := s.instanceSpec(cfg, p, rv, rep)
			if err != nil {
				continue
			}
			spec.Restart.MaxRestarts = 0 // it is being stopped: never start it again
			key := rv.ID + "/" + spec.ID
			if _, ok := records[key]; !ok {
				continue
			}
			proc := s.newProcess(spec)
			if restarted, err := proc.Adopt(ctx, process.Adopted{}); err != nil || restarted {
				continue
			}
			known[key] = true
			res.Stopping = append(res.Stopping, spec.ID)
			procs = append(procs, proc)
		}
	}
	if len(procs) == 0 {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		stopAll(procs)
		s.emit(events.ReleaseStopped, map[string]any{events.KeyReleaseID: rv.ID, "afterDaemonRestart": true})
	}()
}

// Detach ends the supervisor's part without stopping any process, for a
// daemon that leaves its processes to the next one (systemd units outlive
// it; the next daemon adopts them): mutating commands fail from now on and
// crashes are no longer restarted here. A deploy or drain under way is not
// waited for; the next daemon finds its units. It is the alternative to
// Shutdown, not a step before it.
func (s *Supervisor) Detach() {
	if _, first := s.tab.shutdown(); !first {
		return
	}
	rels, units := s.tab.everything()
	procs := unitProcs(units)
	for _, r := range rels {
		// Extras too: a replacement of the proxied process, or the copy it
		// replaced, must not be restarted by a daemon that is leaving.
		for _, in := range s.tab.runInstances(r) {
			procs = append(procs, in.proc)
		}
	}
	for _, p := range procs {
		p.SetAutoRestart(false)
	}
}
