package supervisor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"time"

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
	// Stopping lists the runs (unit names) now being stopped with their
	// stop sequence: those of a release that was draining, a second live
	// copy of the proxied process (see Adopt), and recorded runs whose
	// process the config no longer has.
	Stopping []string
	Orphans  []process.RunRef
}

// adoptCheckWindow bounds the health check that picks one of two live
// copies of the proxied process: a copy that serves answers at once, and
// requests wait meanwhile.
const adoptCheckWindow = 2 * time.Second

// Adopt re-attaches to what the previous daemon, whose last state is snap,
// left running under a runner whose runs outlive the daemon (systemd
// units): the active release's processes, the services and singletons.
// Nothing that runs is restarted; the proxy points at the active release
// again as soon as its proxied process is attached. Processes that died
// while no daemon watched are handled by their restart policy, started
// from the current config rendered with the release's recorded path, id,
// revision and ports. A release that was draining has lost its proxied
// connections with the old daemon: its processes get their stop sequence
// in the background.
//
// A daemon that died during a memory replacement of the proxied process
// leaves two live copies of it. The one the state file says serves (the
// first record, on the release's port) is kept when it passes a health
// check; otherwise the other is, when it passes one. The other copy gets
// its stop sequence in the background, as a drained instance would.
//
// A run the state file records whose process the config no longer has
// (removed, or its policy changed) is stopped in the background with the
// stop signal and grace period it was started with, as the exec runtime's
// restart of the whole app would have stopped it. Runs that no record
// accounts for are returned as orphans and left alone.
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
	live := map[string][]process.RunRef{} // the live runs by "release/instance"
	for _, run := range runs {
		k := run.ReleaseID + "/" + run.InstanceID
		live[k] = append(live[k], run)
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
			// A service's or singleton's port; a proxied instance's own
			// port is the release's only while it serves (adoptWeb).
			if p.Port != 0 && p.ReleaseID == "" {
				rv.Ports[p.ProcessID] = p.Port
			}
		}
		activeRV = &rv
		if err := s.adoptRelease(ctx, cfg, &rv, snap.Processes, records, live, known, res); err != nil {
			return res, err
		}
		s.adoptUnits(ctx, cfg, rv, snap.Processes, known, res)
	}
	// Releases that were draining: their connections went with the old
	// proxy, so the drain is over; their processes still get the stop
	// sequence (hooks and all). A canary ends the same way: a daemon
	// restart does not carry one over (docs/traffic.md says so).
	for _, rec := range snap.Releases {
		if rec.State != string(release.Draining) && rec.State != string(release.Canary) || rec.ID == snap.ActiveReleaseID {
			continue
		}
		rv := releaseVars{ID: rec.ID, Path: rec.Path, Revision: rec.Revision, Ports: rec.Ports}
		s.stopDrained(ctx, cfg, rv, records, known, res)
	}
	var leftovers []process.RunRef
	for _, run := range runs {
		k := run.ReleaseID + "/" + run.InstanceID
		switch {
		case known[k]:
		case records[k].ID != "":
			leftovers = append(leftovers, run)
		default:
			res.Orphans = append(res.Orphans, run)
		}
	}
	s.stopLeftovers(ctx, cfg, leftovers, res)
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
			"adopted": res.Adopted, "restarted": res.Restarted, "failed": res.Failed, "stopping": res.Stopping})
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
// active release rv and makes it active again. The proxied process comes
// first: which of its live copies serves decides its port (rv.Ports),
// which the companions' templates may name.
func (s *Supervisor) adoptRelease(ctx context.Context, cfg *config.Config, rv *releaseVars, recs []state.ProcessRecord,
	records map[string]state.ProcessRecord, live map[string][]process.RunRef, known map[string]bool, res *AdoptResult) error {
	r := s.tab.add(rv.ID, rv.Path, rv.Revision, cfg)
	s.tab.setPorts(r, releasePorts(cfg, rv.Ports))
	wp := cfg.Proxied()
	if wp == nil {
		return s.failAdopt(r, errors.New("the config has no proxied process"))
	}
	web, err := s.adoptWeb(ctx, cfg, r, wp, rv, recs, records, live, known, res)
	if err != nil {
		return s.failAdopt(r, err)
	}
	for i := range cfg.Processes {
		p := &cfg.Processes[i]
		if p.Policy != config.Companion {
			continue
		}
		for rep := 0; rep < max(p.Replicas, 1); rep++ {
			spec, err := s.instanceSpec(cfg, p, *rv, rep)
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
		}
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

// webCopy is a live run of the active release's proxied instance.
type webCopy struct {
	run  process.RunRef
	port int // the port it listens on; 0 when no record says
	rec  state.ProcessRecord
	in   *instance // once attached
}

// adoptWeb attaches to the proxied instance p of release r and records it
// in r's run, with its port in rv.Ports and the run's ports. Of several
// live copies (a memory replacement was under way) it keeps one and stops
// the others in the background; with none it is started again by its
// restart policy (an error when that forbids it).
func (s *Supervisor) adoptWeb(ctx context.Context, cfg *config.Config, r *rel, p *config.Process, rv *releaseVars, recs []state.ProcessRecord,
	records map[string]state.ProcessRecord, live map[string][]process.RunRef, known map[string]bool, res *AdoptResult) (*instance, error) {
	id := p.InstanceID(0)
	key := rv.ID + "/" + id
	known[key] = true
	serving := records[key] // the first record: the copy that served
	copies := s.webCopies(rv, serving, recs, live[key])
	l := s.tab.current(r)
	host := cfg.Proxy.UpstreamHost

	// Attach to every copy as an extra of the run, restarts off: a copy
	// that dies now is not started again, and the release's listener
	// check counts all of them as its own.
	var attached []*webCopy
	for i := range copies {
		c := &copies[i]
		vars := *rv
		if c.port != 0 {
			vars.Ports = maps.Clone(rv.Ports)
			vars.Ports[p.ID] = c.port
		}
		spec, err := s.instanceSpec(cfg, p, vars, 0)
		if err != nil {
			return nil, err
		}
		hold := spec
		hold.Restart.MaxRestarts = 0
		c.in = s.newInstance(r, p, 0, hold, nil)
		c.in.proc.SetAutoRestart(false)
		if !s.tab.addExtra(l, c.in, c.port) {
			return nil, errors.New("the release is being stopped")
		}
		_, err = c.in.proc.Adopt(ctx, process.Adopted{Run: c.run.Name, StartedAt: c.rec.StartedAt, Restarts: c.rec.Restarts, MemoryRestarts: c.rec.MemoryRestarts})
		if err != nil {
			s.tab.dropExtra(l, c.in)
			if !errors.Is(err, process.ErrNotRunning) { // else it ended between the listing and now
				res.Orphans = append(res.Orphans, c.run) // it runs on unwatched: say so
			}
			continue
		}
		c.in.proc.SetSpec(spec)
		attached = append(attached, c)
	}
	// The first that answers, in order of preference; else the most
	// preferred that runs, which waitReady then gives its whole window.
	var keep *webCopy
	for _, c := range attached {
		if c.port != 0 && s.answers(ctx, r, c.in, host, c.port) {
			keep = c
			break
		}
	}
	for _, c := range attached {
		if keep == nil && c.port != 0 {
			keep = c
		}
	}
	var web *instance
	if keep != nil {
		web = keep.in
		rv.Ports[p.ID] = keep.port
		s.tab.promoteExtra(l, web, p.ID, keep.port)
		web.proc.SetAutoRestart(true)
		res.Adopted = append(res.Adopted, id)
	}
	for _, c := range attached {
		if c != keep {
			why := "a second live copy of the proxied process, left by a daemon that stopped during its replacement"
			if keep != nil {
				why += fmt.Sprintf("; the copy on port %d serves", keep.port)
			}
			s.stopCopy(l, c.in, c.run, c.port, why, res)
		}
	}
	if web != nil {
		return web, nil
	}
	// No copy runs: the restart policy decides, as after a crash.
	spec, err := s.instanceSpec(cfg, p, *rv, 0)
	if err != nil {
		return nil, err
	}
	web = s.newInstance(r, p, 0, spec, nil)
	s.tab.addInstance(r, web)
	restarted, err := web.proc.Adopt(ctx, process.Adopted{StartedAt: serving.StartedAt, Restarts: serving.Restarts, MemoryRestarts: serving.MemoryRestarts})
	switch {
	case err != nil:
		res.Failed = append(res.Failed, id)
		return nil, fmt.Errorf("proxied process %s: %w", id, err)
	case restarted:
		res.Restarted = append(res.Restarted, id)
	default:
		res.Adopted = append(res.Adopted, id)
	}
	return web, nil
}

// webCopies orders the live runs of the proxied instance by preference,
// each with its port: first the one whose pid the serving record names,
// on the release's port; then those other records name, on their
// recorded ports, in record order; then the rest, whose port nobody
// knows. Should no record name any (a state file of an older daemon, or
// the serving copy died), the first gets the release's port: the checks
// then tell whether it listens there.
func (s *Supervisor) webCopies(rv *releaseVars, serving state.ProcessRecord, recs []state.ProcessRecord, runs []process.RunRef) []webCopy {
	rank := func(run process.RunRef) (int, state.ProcessRecord) {
		for i, rec := range recs {
			if rec.Pid != 0 && rec.Pid == run.Pid && rec.ReleaseID == rv.ID && rec.ID == run.InstanceID {
				return i, rec
			}
		}
		return len(recs), state.ProcessRecord{}
	}
	var out []webCopy
	for _, run := range runs {
		_, rec := rank(run)
		c := webCopy{run: run, rec: rec, port: rec.Port}
		if serving.Pid != 0 && run.Pid == serving.Pid {
			c.port = rv.Ports[serving.ProcessID]
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool {
		ri, _ := rank(out[i].run)
		rj, _ := rank(out[j].run)
		if ri != rj {
			return ri < rj
		}
		return out[i].run.Name < out[j].run.Name
	})
	if len(out) > 0 && !slices.ContainsFunc(out, func(c webCopy) bool { return c.port != 0 }) {
		out[0].port = rv.Ports[serving.ProcessID]
		if serving.ProcessID == "" {
			out[0].port = rv.Ports[out[0].run.ProcessID]
		}
	}
	return out
}

// answers reports whether proxied instance in of r passes, within
// adoptCheckWindow, the checks a deploy makes before traffic goes to port:
// its health check, or without one its listener, held by r's processes.
func (s *Supervisor) answers(ctx context.Context, r *rel, in *instance, host string, port int) bool {
	if h := in.cfg.Health; in.cfg.HealthEnabled() {
		url := "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + h.Path
		hc := release.HealthCheck{URL: url, Timeout: min(h.Timeout(), adoptCheckWindow), Interval: h.Interval()}
		if release.WaitHealthy(ctx, nil, hc, in.proc.GaveUp()) != nil {
			return false
		}
	}
	return release.CheckListener(ctx, host, port, s.runPids(r)) == nil
}

// stopCopy stops in, a live copy of the proxied instance of run l that
// does not serve, in the background with its stop sequence, then drops it
// from the run's extras and says so.
func (s *Supervisor) stopCopy(l *run, in *instance, run process.RunRef, port int, why string, res *AdoptResult) {
	res.Stopping = append(res.Stopping, run.Name)
	pid := 0
	if st := in.proc.Status(); st.Pid != nil {
		pid = *st.Pid
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		_ = in.proc.Stop(context.Background()) // bounded by its own stop sequence
		s.tab.dropExtra(l, in)
		s.emit(events.LeftoverStopped, map[string]any{"unit": run.Name, events.KeyID: run.InstanceID, events.KeyReleaseID: run.ReleaseID,
			events.KeyPid: pid, "port": port, events.KeyReason: why})
	}()
}

// stopLeftovers stops runs the state file records but this adoption did
// not take back (their process left the config, or changed its policy),
// in the background, with the stop signal and grace period each was
// started with: the config no longer says how, and the state file holds
// no commands, so their lifecycle hooks went with the config.
func (s *Supervisor) stopLeftovers(ctx context.Context, cfg *config.Config, runs []process.RunRef, res *AdoptResult) {
	var procs []*process.Process
	var stopping []process.RunRef
	for _, run := range runs {
		grace := run.GracefulStop
		if grace == 0 { // the runner did not keep it: the config's default grace period
			grace = time.Duration(cfg.Proxy.ForceStopTimeoutMs) * time.Millisecond
		}
		spec := process.Spec{ID: run.InstanceID, StopSignal: run.StopSignal, GracefulStop: grace,
			Fields: map[string]any{events.KeyReleaseID: run.ReleaseID, events.KeyPolicy: run.Policy, events.KeyBaseID: run.ProcessID}}
		proc := s.newProcess(spec)
		proc.SetAutoRestart(false)
		if _, err := proc.Adopt(ctx, process.Adopted{Run: run.Name}); err != nil {
			if !errors.Is(err, process.ErrNotRunning) {
				res.Orphans = append(res.Orphans, run) // still there, and not ours to stop
			}
			continue
		}
		res.Stopping = append(res.Stopping, run.Name)
		procs = append(procs, proc)
		stopping = append(stopping, run)
	}
	for i, proc := range procs {
		run := stopping[i]
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			_ = proc.Stop(context.Background()) // bounded by its own stop sequence
			s.emit(events.LeftoverStopped, map[string]any{"unit": run.Name, events.KeyID: run.InstanceID, events.KeyReleaseID: run.ReleaseID,
				events.KeyPid: run.Pid, events.KeyReason: "the state file records it, but the config no longer has process " + run.ProcessID + " with policy " + run.Policy})
		}()
	}
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
