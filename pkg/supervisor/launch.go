package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// allocatePorts gives every process with a port its port for this deploy,
// at its start, as the Node original does, so every process of the release
// can name every port ({{ports.<id>}}, ROLLBRIDGE_<ID>_PORT): running
// services keep theirs; a running singleton's port is kept when it is
// still in the range, because the old copy frees it before the new one
// starts (so a fixed-port singleton redeploys, which fails in the
// original); everything else gets the first free port of its range.
func (s *Supervisor) allocatePorts(cfg *config.Config) (map[string]int, error) {
	ports := map[string]int{}
	kept := map[int]bool{}
	v := s.tab.view()
	for _, u := range v.services {
		if p := cfg.ProcessByID(u.cfg.ID); u.port != 0 && p != nil && p.Policy == config.Service && !p.IsHandoff() {
			ports[u.cfg.ID], kept[u.port] = u.port, true
		}
	}
	for _, u := range v.singletons {
		p := cfg.ProcessByID(u.cfg.ID)
		if u.port == 0 || p == nil || p.Policy != config.Singleton || p.Port == nil || u.proc.Brief().Pid == 0 {
			continue
		}
		if u.port >= p.Port.From && u.port <= p.Port.To {
			ports[u.cfg.ID], kept[u.port] = u.port, true
		}
	}
	var reqs []release.PortRequest
	for i := range cfg.Processes {
		p := &cfg.Processes[i]
		if _, ok := ports[p.ID]; ok || p.Port == nil {
			continue
		}
		reqs = append(reqs, release.PortRequest{ProcessID: p.ID, Range: *p.Port})
	}
	got, err := release.Allocate(cfg.Proxy.UpstreamHost, reqs, kept)
	if err != nil {
		return nil, err
	}
	for k, v := range got {
		ports[k] = v
	}
	return ports, nil
}

// releasePorts picks the ports a release reports (as the spec's release
// status does) out of a deploy's allocation: every process's that has a
// port, services' and singletons' included, since all of them were
// allocated when the deploy started.
func releasePorts(cfg *config.Config, ports map[string]int) map[string]int {
	out := map[string]int{}
	for _, p := range cfg.Processes {
		if p.Port == nil {
			continue
		}
		if port, ok := ports[p.ID]; ok {
			out[p.ID] = port
		}
	}
	return out
}

// startReleaseProcesses starts the handoff services, then the companions
// (every replica), then the proxied process, of release r, each group in
// config order, and returns the proxied instance. Handoff services come
// first so the release's own processes can reach theirs from the start.
func (s *Supervisor) startReleaseProcesses(ctx context.Context, r *rel, cfg *config.Config, rv releaseVars, progress Progress) (*instance, error) {
	var order []*config.Process
	for _, pick := range []func(*config.Process) bool{(*config.Process).IsHandoff, func(p *config.Process) bool { return p.Policy == config.Companion }} {
		for i := range cfg.Processes {
			if pick(&cfg.Processes[i]) {
				order = append(order, &cfg.Processes[i])
			}
		}
	}
	order = append(order, cfg.Proxied())
	var web *instance
	for _, p := range order {
		for i := 0; i < max(p.Replicas, 1); i++ {
			spec, err := s.instanceSpec(cfg, p, rv, i)
			if err != nil {
				return nil, err
			}
			in := s.newInstance(r, p, i, spec, nil)
			if p.Policy == config.Proxied {
				// Like every process of a starting release, and as in the
				// Node original, a proxied process that crashes is
				// restarted by its restart policy while the health check
				// goes on: an app that fails its first boot (a cache not
				// warm yet, a dependency still starting) gets its window.
				web = in
			}
			s.tab.addInstance(r, in)
			if err := in.proc.Start(ctx, process.ReasonDeploy); err != nil {
				return nil, fmt.Errorf("start %s: %w", spec.ID, err)
			}
			progress.send(events.ProcessStarted, map[string]any{events.KeyID: spec.ID, events.KeyPid: in.proc.Status().Pid})
		}
	}
	return web, nil
}

// waitReady waits until the proxied process web of r, listening on
// host:port, may take traffic: its health check passes (or, with health:
// false, it listens on its port), and every listener there belongs to the
// processes of r (see checkOwner). Crashes in between are restarted by the
// process's restart policy, as in the Node original; the wait ends early
// only once no restart is coming (see process.GaveUp).
func (s *Supervisor) waitReady(ctx context.Context, r *rel, web *instance, host string, port int, progress Progress) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	err := s.waitHealthy(ctx, r, web, host, port, progress)
	st := web.proc.Status()
	var he *release.HealthError
	switch {
	case errors.Is(err, release.ErrExited):
		before := "it listened on " + addr
		if web.cfg.HealthEnabled() {
			before = "its health check at http://" + addr + web.cfg.Health.Path + " passed"
		}
		err = fmt.Errorf("process %s exited (%s) before %s, and its restart policy restarts it no more", web.proc.ID(), exitText(st), before)
		if taken := s.squatted(ctx, r, host, port); taken != nil {
			err = fmt.Errorf("%w, maybe because its port is taken: %w", err, taken)
		}
	case errors.As(err, &he) && st.Restarts > 0:
		times := "times"
		if st.Restarts == 1 {
			times = "time"
		}
		err = fmt.Errorf("%w; process %s exited and was restarted %d %s meanwhile (rollbridgectl logs --process %s shows why)", err, web.proc.ID(), st.Restarts, times, web.proc.ID())
		if taken := s.squatted(ctx, r, host, port); taken != nil {
			err = fmt.Errorf("%w, maybe because its port is taken: %w", err, taken)
		}
	}
	if err != nil {
		if ctx.Err() != nil && s.life.Err() != nil {
			return ErrShuttingDown
		}
		return err
	}
	return nil
}

// waitHealthy is waitReady's wait and checks.
func (s *Supervisor) waitHealthy(ctx context.Context, r *rel, web *instance, host string, port int, progress Progress) error {
	if !web.cfg.HealthEnabled() {
		// No health check: the listener itself is the sign of readiness,
		// and it is checked before traffic goes to it.
		cfg := s.tab.current(r).cfg
		return release.WaitListener(ctx, host, port, cfg.Proxy.HealthTimeout(), func() []int { return s.runPids(r) }, web.proc.GaveUp())
	}
	h := web.cfg.Health
	url := "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + h.Path
	progress.send(events.HealthCheck, map[string]any{"url": url})
	checkStart := time.Now()
	err := release.WaitHealthy(ctx, nil, release.HealthCheck{URL: url, Timeout: h.Timeout(),
		Interval: h.Interval(), StartDelay: h.StartDelay()}, web.proc.GaveUp())
	if err != nil {
		return err
	}
	// Whoever answered, the traffic would go to whoever listens: check
	// that no one but the release does.
	if err := s.checkOwner(ctx, r, host, port); err != nil {
		return err
	}
	healthy := map[string]any{events.KeyReleaseID: r.id, "url": url, "waitedMs": time.Since(checkStart).Milliseconds()}
	s.emit(events.ReleaseHealthy, healthy)
	progress.send(events.ReleaseHealthy, healthy)
	return nil
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
