package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// DeployRequest names a prepared release.
type DeployRequest struct {
	ReleasePath string
	ReleaseID   string // default: Revision, else a UTC timestamp
	Revision    string
}

// DeployResult is what deploy and rollback answer.
type DeployResult struct {
	ActiveReleaseID   string  `json:"activeReleaseId"`
	PreviousReleaseID *string `json:"previousReleaseId"`
}

// Progress reports a step of a long command; it may be nil.
type Progress func(message string, data map[string]any)

func (p Progress) send(msg string, data map[string]any) {
	if p != nil {
		p(msg, data)
	}
}

// Deploy starts a new release, health-checks it, switches traffic to it and
// retires the previous one, in the spec's order. On failure the previous
// release keeps serving and everything this deploy started is stopped again.
func (s *Supervisor) Deploy(ctx context.Context, req DeployRequest, progress Progress) (*DeployResult, error) {
	id := req.ReleaseID
	if id == "" {
		id = req.Revision
	}
	if id == "" {
		id = time.Now().UTC().Format("20060102150405")
	}
	if err := s.begin("deploy of release " + id); err != nil {
		return nil, err
	}
	defer s.end()
	path, err := filepath.Abs(req.ReleasePath)
	if err != nil {
		return nil, err
	}
	if err := checkReleasePath(path); err != nil {
		s.emit("deploy failed", map[string]any{"releaseId": id, "releasePath": path, "error": err.Error()})
		return nil, err
	}
	s.mu.Lock()
	if old := s.findLocked(id); old != nil {
		if old.state.Live() {
			// Redeploying what runs (say, the same revision to pick up new
			// env) must work; the new record gets a distinct id.
			id = s.uniqueIDLocked(id)
		} else {
			s.removeLocked(old)
		}
	}
	r := &rel{id: id, path: path, revision: req.Revision, cfg: s.cfg.Load(), state: release.Starting, createdAt: time.Now()}
	s.releases = append(s.releases, r)
	s.mu.Unlock()
	return s.launch(ctx, r, progress)
}

// Rollback redeploys a retained release: by default the one that was active
// before the current one.
func (s *Supervisor) Rollback(ctx context.Context, releaseID string, progress Progress) (*DeployResult, error) {
	if err := s.begin("rollback"); err != nil {
		return nil, err
	}
	defer s.end()
	s.mu.Lock()
	target, err := s.rollbackTargetLocked(releaseID)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := checkReleasePath(target.path); err != nil {
		return nil, fmt.Errorf("rollback to %s: %w", target.id, err)
	}
	progress.send("rollback starting", map[string]any{"releaseId": target.id})
	// A target still draining is stopped first: its processes are the
	// previous generation and must not overlap the fresh start.
	s.stopRelease(target)
	s.mu.Lock()
	target.state = release.Starting
	target.cfg = s.cfg.Load()
	target.lastError = ""
	target.procs, target.ports, target.backend = nil, nil, nil // a fresh generation
	target.drainStartedAt, target.stoppedAt, target.activatedAt = time.Time{}, time.Time{}, time.Time{}
	s.mu.Unlock()
	return s.launch(ctx, target, progress)
}

func (s *Supervisor) rollbackTargetLocked(id string) (*rel, error) {
	if id != "" {
		r := s.findLocked(id)
		switch {
		case r == nil:
			return nil, refuse(ErrNotFound, "release %s is not retained; retained releases: %s", id, s.retainedIDsLocked())
		case r == s.active:
			return nil, refuse(ErrConflict, "release %s is already active", id)
		}
		return r, nil
	}
	var best *rel
	for _, r := range s.releases {
		if r == s.active || r.activatedAt.IsZero() && r.drainStartedAt.IsZero() {
			continue // never served traffic
		}
		if best == nil || r.retiredAt().After(best.retiredAt()) {
			best = r
		}
	}
	if best == nil {
		return nil, refuse(ErrNotFound, "no previous release to roll back to")
	}
	return best, nil
}

func (r *rel) retiredAt() time.Time {
	if !r.drainStartedAt.IsZero() {
		return r.drainStartedAt
	}
	return r.stoppedAt
}

func (s *Supervisor) retainedIDsLocked() string {
	out := ""
	for _, r := range s.releases {
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

func (s *Supervisor) uniqueIDLocked(id string) string {
	for n := 2; ; n++ {
		c := id + "-" + strconv.Itoa(n)
		if s.findLocked(c) == nil {
			return c
		}
	}
}

func (s *Supervisor) removeLocked(r *rel) {
	for i, x := range s.releases {
		if x == r {
			s.releases = append(s.releases[:i], s.releases[i+1:]...)
			return
		}
	}
}

// launch runs the deploy flow for r (state Starting). The caller holds the
// operation slot.
func (s *Supervisor) launch(ctx context.Context, r *rel, progress Progress) (*DeployResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnShutdown := context.AfterFunc(s.life, cancel)
	defer stopOnShutdown()

	cfg := r.cfg
	s.mu.Lock()
	prev := s.active
	r.stopped = make(chan struct{})
	r.gen++ // a rollback relaunches a record: stale stops must not touch the new run
	r.stopping = false
	s.mu.Unlock()
	var prevID *string
	if prev != nil {
		prevID = &prev.id
	}
	s.emit("deploy starting", map[string]any{"releaseId": r.id, "releasePath": r.path, "revision": r.revision, "previousReleaseId": prevID})
	progress.send("deploy starting", map[string]any{"releaseId": r.id, "releasePath": r.path})

	var startedServices []*unit
	fail := func(err error) (*DeployResult, error) {
		return nil, s.failDeploy(r, prev, startedServices, err)
	}

	ports, err := s.allocatePorts(cfg)
	if err != nil {
		return fail(err)
	}
	rv := releaseVars{ID: r.id, Path: r.path, Revision: r.revision, Ports: ports}
	s.mu.Lock()
	r.ports = map[string]int{}
	for _, p := range cfg.Processes {
		if (p.Policy == config.Proxied || p.Policy == config.Companion) && p.Port != nil {
			r.ports[p.ID] = ports[p.ID]
		}
	}
	s.mu.Unlock()

	// 1. services not yet running.
	startedServices, err = s.ensureServices(ctx, cfg, rv, progress)
	if err != nil {
		return fail(err)
	}
	// 2. companions, then the proxied process.
	if err := s.startReleaseProcesses(ctx, r, rv, progress); err != nil {
		return fail(err)
	}
	web := r.proxied()
	if web.cfg.HealthEnabled() {
		h := web.cfg.Health
		url := "http://" + net.JoinHostPort(cfg.Proxy.UpstreamHost, strconv.Itoa(rv.Ports[web.cfg.ID])) + h.Path
		progress.send("health check", map[string]any{"url": url})
		checkStart := time.Now()
		err := release.WaitHealthy(ctx, nil, release.HealthCheck{URL: url, Timeout: config.Ms(h.TimeoutMs),
			Interval: config.Ms(h.IntervalMs), StartDelay: config.Ms(h.StartDelayMs)}, web.proc.Exited())
		if errors.Is(err, release.ErrExited) {
			st := web.proc.Status()
			err = fmt.Errorf("process %s exited (%s) before its health check at %s passed", web.proc.ID(), exitText(st), url)
		}
		if err != nil {
			if ctx.Err() != nil && s.life.Err() != nil {
				err = ErrShuttingDown
			}
			return fail(err)
		}
		healthy := map[string]any{"releaseId": r.id, "url": url, "waitedMs": time.Since(checkStart).Milliseconds()}
		s.emit("release healthy", healthy)
		progress.send("release healthy", healthy)
	} else if exited(web.proc) {
		return fail(fmt.Errorf("process %s exited (%s) right after it started", web.proc.ID(), exitText(web.proc.Status())))
	}

	// 3. switch traffic.
	backend := proxy.NewBackend(r.id, net.JoinHostPort(cfg.Proxy.UpstreamHost, strconv.Itoa(rv.Ports[web.cfg.ID])))
	s.mu.Lock()
	r.backend = backend
	r.state = release.Active
	r.activatedAt = time.Now()
	s.active = r
	s.proxy.Swap(backend)
	s.mu.Unlock()
	web.proc.SetAutoRestart(true)
	s.emit("traffic switched", map[string]any{"releaseId": r.id, "previousReleaseId": prevID})
	progress.send("traffic switched", map[string]any{"releaseId": r.id, "previousReleaseId": prevID})

	// 4. services now restart from the newest good release.
	s.refreshServices(cfg, rv)
	// 5. singletons: old stopped, then new started, never overlapping.
	singletonErr := s.replaceSingletons(ctx, cfg, r, rv, progress)
	// 6. drain and stop the previous release in the background.
	if prev != nil {
		s.retire(prev)
	}
	s.mu.Lock()
	s.pruneLocked(time.Now())
	s.mu.Unlock()
	if singletonErr != nil {
		s.emit("deploy failed", map[string]any{"releaseId": r.id, "error": singletonErr.Error(), "trafficSwitched": true})
		return nil, fmt.Errorf("release %s is active, but %w", r.id, singletonErr)
	}
	return &DeployResult{ActiveReleaseID: r.id, PreviousReleaseID: prevID}, nil
}

func exited(p *process.Process) bool {
	select {
	case <-p.Exited():
		return true
	default:
		return false
	}
}

func exitText(st process.Status) string {
	switch {
	case st.ExitSignal != nil:
		return "signal " + *st.ExitSignal
	case st.ExitCode != nil:
		return "exit code " + strconv.Itoa(*st.ExitCode)
	}
	return "no exit status"
}

// allocatePorts reserves a port for every release process with a port and
// every service that has none yet; running services and singletons keep theirs.
func (s *Supervisor) allocatePorts(cfg *config.Config) (map[string]int, error) {
	ports := map[string]int{}
	var reqs []release.PortRequest
	s.mu.Lock()
	for _, u := range s.services {
		if u.port != 0 {
			ports[u.cfg.ID] = u.port
		}
	}
	for _, u := range s.singletons {
		if u.port != 0 {
			ports[u.cfg.ID] = u.port
		}
	}
	s.mu.Unlock()
	for i := range cfg.Processes {
		p := &cfg.Processes[i]
		if p.Port == nil {
			continue
		}
		switch p.Policy {
		case config.Service:
			if _, ok := ports[p.ID]; ok {
				continue
			}
		case config.Singleton:
			continue // allocated when it is replaced, after the old one freed its port
		}
		reqs = append(reqs, release.PortRequest{ProcessID: p.ID, Range: *p.Port})
	}
	got, err := release.Allocate(cfg.Proxy.UpstreamHost, reqs, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range got {
		ports[k] = v
	}
	return ports, nil
}

// ensureServices starts every configured service that is not running and
// returns the ones it started, so a failed deploy can stop them again.
func (s *Supervisor) ensureServices(ctx context.Context, cfg *config.Config, rv releaseVars, progress Progress) ([]*unit, error) {
	var started []*unit
	for i := range cfg.Processes {
		p := &cfg.Processes[i]
		if p.Policy != config.Service {
			continue
		}
		s.mu.Lock()
		u := s.services[p.ID]
		s.mu.Unlock()
		if u != nil && u.proc.Status().State == process.Running {
			continue
		}
		if u != nil {
			// A service that gave up (restart budget spent) is started
			// afresh with this release's template.
			_ = u.proc.Stop(context.Background()) // already stopped: only resets its state
		}
		spec, err := s.instanceSpec(cfg, p, rv, 0)
		if err != nil {
			return started, err
		}
		nu := &unit{cfg: p, proc: s.newProcess(spec), port: rv.Ports[p.ID], releaseID: rv.ID}
		if err := nu.proc.Start(ctx, process.ReasonDeploy); err != nil {
			return started, fmt.Errorf("start service %s: %w", p.ID, err)
		}
		s.mu.Lock()
		s.services[p.ID] = nu
		s.mu.Unlock()
		started = append(started, nu)
		progress.send("service started", map[string]any{"id": p.ID, "pid": nu.proc.Status().Pid})
	}
	return started, nil
}

// startReleaseProcesses starts the companions (every replica), then the
// proxied process, of release r.
func (s *Supervisor) startReleaseProcesses(ctx context.Context, r *rel, rv releaseVars, progress Progress) error {
	cfg := r.cfg
	var order []*config.Process
	for i := range cfg.Processes {
		if cfg.Processes[i].Policy == config.Companion {
			order = append(order, &cfg.Processes[i])
		}
	}
	order = append(order, cfg.Proxied())
	for _, p := range order {
		for i := 0; i < max(p.Replicas, 1); i++ {
			spec, err := s.instanceSpec(cfg, p, rv, i)
			if err != nil {
				return err
			}
			in := &instance{cfg: p, replica: i, proc: s.newProcess(spec)}
			if p.Policy == config.Proxied {
				// A crash before the switch fails the deploy instead of
				// being retried behind the health check's back.
				in.proc.SetAutoRestart(false)
			}
			s.mu.Lock()
			r.procs = append(r.procs, in)
			s.mu.Unlock()
			if err := in.proc.Start(ctx, process.ReasonDeploy); err != nil {
				return fmt.Errorf("start %s: %w", spec.ID, err)
			}
			progress.send("process started", map[string]any{"id": spec.ID, "pid": in.proc.Status().Pid})
		}
	}
	return nil
}

// failDeploy undoes a deploy: the new release's processes and the services
// this deploy started are stopped; the previous release keeps serving.
func (s *Supervisor) failDeploy(r, prev *rel, services []*unit, cause error) error {
	output := map[string][]string{}
	s.mu.Lock()
	procs := append([]*instance(nil), r.procs...)
	s.mu.Unlock()
	for _, in := range procs {
		logs := in.proc.Logs()
		if len(logs) > 20 {
			logs = logs[len(logs)-20:]
		}
		lines := make([]string, len(logs))
		for i, l := range logs {
			lines[i] = l.Line
		}
		output[in.proc.ID()] = lines
	}
	s.stopRelease(r)
	stopAll(unitProcs(services))
	s.mu.Lock()
	for _, u := range services {
		if s.services[u.cfg.ID] == u {
			delete(s.services, u.cfg.ID)
		}
	}
	r.state = release.Failed
	r.lastError = cause.Error()
	s.pruneLocked(time.Now())
	s.mu.Unlock()
	data := map[string]any{"releaseId": r.id, "error": cause.Error(), "output": output}
	if prev != nil {
		data["activeReleaseId"] = prev.id
	}
	s.emit("deploy failed", data)
	still := "no release is active"
	if prev != nil {
		still = "release " + prev.id + " stays active"
	}
	return fmt.Errorf("deploy of release %s failed: %w (%s; see rollbridgectl logs and events)", r.id, cause, still)
}

// refreshServices points every running service's restart template at the
// release that just became active.
func (s *Supervisor) refreshServices(cfg *config.Config, rv releaseVars) {
	s.mu.Lock()
	units := make([]*unit, 0, len(s.services))
	for _, u := range s.services {
		units = append(units, u)
	}
	s.mu.Unlock()
	for _, u := range units {
		p := cfg.ProcessByID(u.cfg.ID)
		if p == nil || p.Policy != config.Service {
			continue // removed from the config by a reload: keep its old template
		}
		spec, err := s.instanceSpec(cfg, p, rv, 0)
		if err != nil {
			s.emit("service template refresh failed", map[string]any{"id": p.ID, "releaseId": rv.ID, "error": err.Error()})
			continue
		}
		u.proc.SetSpec(spec)
		s.mu.Lock()
		u.releaseID = rv.ID
		s.mu.Unlock()
	}
}

// replaceSingletons stops each old singleton and then starts the new one.
// All are attempted; the first error is returned after the old ones stopped.
func (s *Supervisor) replaceSingletons(ctx context.Context, cfg *config.Config, r *rel, rv releaseVars, progress Progress) error {
	var firstErr error
	wanted := map[string]bool{}
	for i := range cfg.Processes {
		p := &cfg.Processes[i]
		if p.Policy != config.Singleton {
			continue
		}
		wanted[p.ID] = true
		s.mu.Lock()
		old := s.singletons[p.ID]
		s.mu.Unlock()
		if old != nil {
			_ = old.proc.Stop(context.Background()) // bounded by its own stop sequence
		}
		ports := rv.Ports
		port := 0
		if p.Port != nil {
			got, err := release.Allocate(cfg.Proxy.UpstreamHost, []release.PortRequest{{ProcessID: p.ID, Range: *p.Port}}, nil)
			if err != nil {
				firstErr = cmpErr(firstErr, fmt.Errorf("singleton %s: %w", p.ID, err))
				continue
			}
			port = got[p.ID]
			ports = make(map[string]int, len(rv.Ports)+1)
			for k, v := range rv.Ports {
				ports[k] = v
			}
			ports[p.ID] = port
		}
		spec, err := s.instanceSpec(cfg, p, releaseVars{ID: rv.ID, Path: rv.Path, Revision: rv.Revision, Ports: ports}, 0)
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("singleton %s: %w", p.ID, err))
			continue
		}
		u := &unit{cfg: p, proc: s.newProcess(spec), port: port, releaseID: r.id}
		s.mu.Lock()
		s.singletons[p.ID] = u
		s.mu.Unlock()
		if err := u.proc.Start(ctx, process.ReasonDeploy); err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("singleton %s failed to start: %w", p.ID, err))
			continue
		}
		progress.send("singleton replaced", map[string]any{"id": p.ID, "pid": u.proc.Status().Pid})
	}
	// Singletons removed from the config by a reload stop with this deploy.
	s.mu.Lock()
	var gone []*unit
	for id, u := range s.singletons {
		if !wanted[id] {
			gone = append(gone, u)
			delete(s.singletons, id)
		}
	}
	s.mu.Unlock()
	stopAll(unitProcs(gone))
	return firstErr
}

func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// retire moves prev to draining: nonBlockingDrain companions start stopping
// now; the rest stop once its connections are gone or the drain times out.
func (s *Supervisor) retire(prev *rel) {
	drain := config.Ms(prev.cfg.Proxy.DrainTimeoutMs)
	ctx, cancel := context.WithTimeout(s.life, drain)
	s.mu.Lock()
	prev.state = release.Draining
	prev.drainStartedAt = time.Now()
	prev.drainCancel = cancel
	procs := append([]*instance(nil), prev.procs...)
	backend := prev.backend
	gen := prev.gen
	s.mu.Unlock()
	for _, in := range procs {
		in.proc.SetAutoRestart(false) // only an active release's processes are restarted
		if in.cfg.NonBlockingDrain {
			s.bg.Add(1)
			go func() {
				defer s.bg.Done()
				_ = in.proc.Stop(context.Background()) // bounded by its own stop sequence
			}()
		}
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer cancel()
		http0, ws0 := backend.Connections()
		err := backend.Drain(ctx)
		http1, ws1 := backend.Connections()
		backend.CloseConnections()
		s.emit("release drained", map[string]any{"releaseId": prev.id, "timedOut": err != nil,
			"connectionsAtStart": http0 + ws0, "connectionsClosed": http1 + ws1})
		s.stopReleaseGen(prev, gen)
		s.mu.Lock()
		s.pruneLocked(time.Now())
		s.mu.Unlock()
	}()
}

// stopRelease stops every process of r (in parallel) and marks it stopped.
// Concurrent callers wait for the first one's stop.
func (s *Supervisor) stopRelease(r *rel) {
	s.mu.Lock()
	s.stopReleaseLocked(r)
}

// stopReleaseGen stops r only if it is still the launch gen; a drain that
// ends after a rollback relaunched the release must leave the new run alone.
func (s *Supervisor) stopReleaseGen(r *rel, gen int) {
	s.mu.Lock()
	if r.gen != gen {
		s.mu.Unlock()
		return
	}
	s.stopReleaseLocked(r)
}

// stopReleaseLocked is stopRelease with s.mu held on entry; it unlocks.
func (s *Supervisor) stopReleaseLocked(r *rel) {
	if r.drainCancel != nil {
		r.drainCancel()
	}
	if r.stopping || r.stopped == nil {
		ch := r.stopped
		s.mu.Unlock()
		if ch != nil {
			<-ch
		}
		return
	}
	r.stopping = true
	procs := append([]*instance(nil), r.procs...)
	backend := r.backend
	wasActive := s.active == r
	if wasActive {
		s.active = nil
		s.proxy.Swap(nil)
	}
	s.mu.Unlock()
	stopAll(instanceProcs(procs))
	if backend != nil {
		backend.CloseConnections()
	}
	s.mu.Lock()
	served := r.state != release.Starting && r.state != release.Failed // a failed deploy is no "release stopped"
	if served {
		r.state = release.Stopped
	}
	r.stoppedAt = time.Now()
	close(r.stopped)
	s.mu.Unlock()
	if served {
		s.emit("release stopped", map[string]any{"releaseId": r.id})
	}
}

// pruneLocked forgets stopped releases beyond releaseRetention.
func (s *Supervisor) pruneLocked(now time.Time) {
	ret := s.cfg.Load().ReleaseRetention
	kept := 0
	for i := len(s.releases) - 1; i >= 0; i-- {
		r := s.releases[i]
		if r.state.Live() || r.stopping && !isClosed(r.stopped) {
			continue
		}
		kept++
		tooOld := ret.MaxAgeMs > 0 && !r.stoppedAt.IsZero() && now.Sub(r.stoppedAt) > config.Ms(ret.MaxAgeMs)
		if kept > ret.Keep || tooOld {
			s.releases = append(s.releases[:i], s.releases[i+1:]...)
		}
	}
}

func isClosed(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
