package supervisor

import (
	"context"
	"fmt"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// ensureServices starts every configured persistent service that is not
// running and returns the ones it started, so a failed deploy can stop them
// again. Handoff services belong to each release (startReleaseProcesses).
func (s *Supervisor) ensureServices(ctx context.Context, cfg *config.Config, rv releaseVars, progress Progress) ([]*unit, error) {
	var started []*unit
	for i := range cfg.Processes {
		p := &cfg.Processes[i]
		if p.Policy != config.Service || p.IsHandoff() {
			continue
		}
		u := s.tab.service(p.ID)
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
		s.tab.setService(nu)
		started = append(started, nu)
		progress.send(events.ServiceStarted, map[string]any{events.KeyID: p.ID, events.KeyPid: nu.proc.Status().Pid})
	}
	return started, nil
}

// refreshServices points every running service's restart template at the
// release that just became active.
func (s *Supervisor) refreshServices(cfg *config.Config, rv releaseVars) {
	for _, u := range s.tab.serviceUnits() {
		p := cfg.ProcessByID(u.cfg.ID)
		if p == nil || p.Policy != config.Service || p.IsHandoff() {
			continue // no longer a persistent service (SetConfig): keep its old template
		}
		spec, err := s.instanceSpec(cfg, p, rv, 0)
		if err != nil {
			s.emit(events.ServiceTemplateRefreshFailed, map[string]any{events.KeyID: p.ID, events.KeyReleaseID: rv.ID, events.KeyError: err.Error()})
			continue
		}
		u.proc.SetSpec(spec)
		s.tab.setUnitRelease(u, rv.ID)
	}
}

// replaceSingletons stops each old singleton and then starts the new one,
// from release rv. All are attempted; the first error is returned after the
// old ones stopped.
func (s *Supervisor) replaceSingletons(ctx context.Context, cfg *config.Config, rv releaseVars, progress Progress) error {
	var firstErr error
	wanted := map[string]bool{}
	for i := range cfg.Processes {
		p := &cfg.Processes[i]
		if p.Policy != config.Singleton {
			continue
		}
		wanted[p.ID] = true
		if old := s.tab.singleton(p.ID); old != nil {
			old.proc.SetStopSettings(stopSettings(p)) // retired by the newest config, like a release
			_ = old.proc.Stop(context.Background())   // bounded by its own stop sequence
		}
		port := rv.Ports[p.ID] // allocated with the release's ports (see allocatePorts)
		spec, err := s.instanceSpec(cfg, p, rv, 0)
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("singleton %s: %w", p.ID, err))
			continue
		}
		u := &unit{cfg: p, proc: s.newProcess(spec), port: port, releaseID: rv.ID}
		s.tab.setSingleton(u)
		if err := u.proc.Start(ctx, process.ReasonDeploy); err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("singleton %s failed to start: %w", p.ID, err))
			continue
		}
		progress.send(events.SingletonReplaced, map[string]any{events.KeyID: p.ID, events.KeyPid: u.proc.Status().Pid})
	}
	// Singletons removed from the config by a reload stop with this deploy.
	stopAll(unitProcs(s.tab.dropSingletonsExcept(wanted)))
	return firstErr
}

func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}
