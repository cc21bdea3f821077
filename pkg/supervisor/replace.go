package supervisor

import (
	"context"
	"fmt"
	"maps"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// A memory restart of the proxied process is a replacement, not a restart
// in place: a restart in place leaves no process on the port from the
// moment the old one stops until the new one listens, and every request in
// between fails (all of a slow app's boot). So the proxied process reports
// its limit (process.WithMemoryReport) and the supervisor runs the deploy
// flow for that one process: a new instance on a new port, its health
// check and listener check, the switch, then a drain of the old instance
// before it stops. Processes whose templates name the proxied process's
// port are restarted after the switch, since their port is now wrong.

// Bounds of the pause after a failed replacement: reports that come
// sooner are ignored, so a replacement that cannot succeed (no free port,
// an app that no longer boots) is not retried at every memory sample.
const (
	retryFirst = 10 * time.Second
	retryMax   = 10 * time.Minute
)

// backoff spaces the attempts to replace one proxied instance. Safe for
// concurrent use.
type backoff struct {
	mu       sync.Mutex
	failures int
	next     time.Time
}

func (b *backoff) due(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !now.Before(b.next)
}

func (b *backoff) failed(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := retryFirst << min(b.failures, 10)
	d = min(d, retryMax)
	b.failures++
	b.next = now.Add(d)
	return d
}

// newInstance makes replica of p for release r from spec. The proxied
// process tells the supervisor when it exits and is restarted (crash.go),
// and, with a memory limit, reports the limit instead of restarting in
// place (replaceWeb). memoryPrev, when not nil, is the instance this one
// replaces after a memory limit, whose counts it carries on.
func (s *Supervisor) newInstance(r *rel, p *config.Process, replica int, spec process.Spec, memoryPrev *instance) *instance {
	in := &instance{cfg: p, replica: replica}
	if p.Policy != config.Proxied {
		in.proc = s.newProcess(spec)
		return in
	}
	in.retry = &backoff{}
	var opts []process.Option
	if spec.Memory != nil {
		opts = append(opts, process.WithMemoryReport(func() { s.replaceSoon(r, in, whyMemory) }))
		if memoryPrev != nil {
			opts = append(opts, process.WithMemoryReplacementOf(memoryPrev.proc))
		}
	}
	in.proc = s.newProcessSink(spec, webSink{s, r, in}, opts...)
	return in
}

// why says what a replacement of the proxied process is for.
type why int

const (
	whyMemory    why = iota // it went over its memory limit
	whyPortTaken            // after it crashed, another process took its port
)

func (w why) String() string {
	if w == whyMemory {
		return "memory"
	}
	return "port taken"
}

// replaceSoon starts a replacement of proxied instance in of release r
// when in serves the active release, no command runs and no failed attempt
// asks to wait; otherwise it does nothing, and the next report tries again
// (for a memory limit, the next sample above it: a release still starting
// is replaced once it is active, a draining one stops anyway).
func (s *Supervisor) replaceSoon(r *rel, in *instance, w why) {
	if !in.retry.due(time.Now()) {
		return
	}
	if _, ok := s.tab.activeWeb(r, in); !ok {
		return
	}
	if err := s.tab.beginAuto(fmt.Sprintf("replacement of %s in release %s (%s)", in.proc.ID(), r.id, w)); err != nil {
		return // a command runs, or shutdown: see above
	}
	// Shutdown waits for the slot before it waits for bg, so this Add
	// comes before that Wait.
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.tab.end()
		s.replaceWeb(r, in, w)
	}()
}

// replaceWeb replaces old, the proxied instance of the active release r,
// without dropping a request. The caller holds the running-command slot.
// On failure old keeps serving and the attempt is retried later (backoff).
func (s *Supervisor) replaceWeb(r *rel, old *instance, w why) {
	ctx, cancel := context.WithCancel(s.life)
	defer cancel()
	l, ok := s.tab.activeWeb(r, old)
	if !ok {
		return
	}
	cfg, p, id := l.cfg, old.cfg, old.proc.ID()
	fail := func(err error) {
		if s.life.Err() != nil {
			return // shutting down: nothing failed
		}
		wait := old.retry.failed(time.Now())
		name, hint := events.MemoryRestartFailed, "the running instance keeps serving over its memory limit"
		if w == whyPortTaken {
			name, hint = events.ProcessRestartFailed, "no traffic reaches the release until its proxied process owns its port again"
		}
		s.emit(name, map[string]any{events.KeyReleaseID: r.id, events.KeyProcessID: id, events.KeyID: id,
			events.KeyReason: w.String(), events.KeyError: err.Error(), "retryInMs": wait.Milliseconds(), events.KeyHint: hint})
	}

	ports := s.tab.runPorts(l)
	prevPort := ports[p.ID]
	avoid := map[int]bool{}
	for _, port := range ports {
		avoid[port] = true
	}
	got, err := release.Allocate(cfg.Proxy.UpstreamHost, []release.PortRequest{{ProcessID: p.ID, Range: *p.Port}}, avoid)
	if err != nil {
		fail(fmt.Errorf("no port for a replacement of %s: %w", id, err))
		return
	}
	port := got[p.ID]
	ports[p.ID] = port
	rv := releaseVars{ID: r.id, Path: r.path, Revision: r.revision, Ports: ports}
	spec, err := s.instanceSpec(cfg, p, rv, old.replica)
	if err != nil {
		fail(err)
		return
	}
	var memoryPrev *instance
	reason := process.ReasonCrash // it replaces a process that crashed
	if w == whyMemory {
		memoryPrev, reason = old, process.ReasonMemory
	}
	next := s.newInstance(r, p, old.replica, spec, memoryPrev)
	next.proc.SetAutoRestart(false) // as in a deploy: a crash before the switch fails the attempt
	if !s.tab.addExtra(l, next) {
		return // the release is being stopped
	}
	undo := func() {
		_ = next.proc.Stop(context.Background()) // bounded by its own stop sequence
		s.tab.dropExtra(l, next)
	}
	if err := next.proc.Start(ctx, reason); err != nil {
		undo()
		fail(err)
		return
	}
	host := cfg.Proxy.UpstreamHost
	if err := s.waitReady(ctx, r, next, host, port, nil); err != nil {
		undo()
		fail(err)
		return
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	drainCtx, drainCancel := context.WithTimeout(s.life, s.cfg.Load().Proxy.DrainTimeout())
	prevBackend, err := s.tab.switchWeb(r, l, old, next, port, proxy.NewBackend(r.id, addr), drainCancel)
	if err != nil {
		drainCancel()
		undo()
		fail(err)
		return
	}
	prevBackend.Retire() // as at a deploy's switch (retire.go)
	next.proc.SetAutoRestart(true)
	old.proc.SetAutoRestart(false) // it drains and stops; never revived
	prevPid, nextPid := 0, 0
	if st := old.proc.Status(); st.Pid != nil {
		prevPid = *st.Pid
	}
	if st := next.proc.Status(); st.Pid != nil {
		nextPid = *st.Pid
	}
	s.emit(events.ProcessReplaced, map[string]any{events.KeyReleaseID: r.id, events.KeyProcessID: id, events.KeyID: id,
		events.KeyReason: w.String(), events.KeyPid: nextPid, "previousPid": prevPid, "port": port, "previousPort": prevPort})

	s.followPort(ctx, r, l, rv, p.ID, prevPort, reason)

	s.bg.Add(1) // the slot is still held: see replaceSoon
	go func() {
		defer s.bg.Done()
		defer drainCancel()
		data := drainReport(drainCtx, prevBackend, map[string]any{events.KeyReleaseID: r.id, events.KeyProcessID: id, events.KeyID: id,
			events.KeyPid: prevPid})
		_ = old.proc.Stop(context.Background()) // bounded by its own stop sequence
		s.tab.dropExtra(l, old)
		s.emit(events.ProcessDrained, data)
	}()
}

// followPort brings the processes that know the proxied process's port up
// to date after it moved from prevPort to rv.Ports[webID]: every process of
// run l, and the services and singletons last started from release r, get
// the new ports for their next start; those whose command, cwd or env
// names the port ({{ports.<web>}}) are restarted now, in parallel, since
// what runs has the old one. ROLLBRIDGE_<WEB>_PORT is in every process's
// environment, so it alone does not make a process restart: that would
// restart every process of the release.
func (s *Supervisor) followPort(ctx context.Context, r *rel, l *run, rv releaseVars, webID string, prevPort int, reason process.StartReason) {
	cfg := l.cfg
	before := releaseVars{ID: rv.ID, Path: rv.Path, Revision: rv.Revision, Ports: maps.Clone(rv.Ports)}
	before.Ports[webID] = prevPort
	type target struct {
		id, base string
		proc     *process.Process
	}
	var restart []target
	follow := func(p *config.Process, replica int, proc *process.Process, id string) {
		spec, err := s.instanceSpec(cfg, p, rv, replica)
		if err != nil {
			// It rendered with the same values but the port at the deploy.
			s.internalError(fmt.Errorf("render %s after the port of %s moved: %w", id, webID, err))
			return
		}
		proc.SetSpec(spec)
		if s.namesPort(cfg, p, rv, before, replica) {
			restart = append(restart, target{id, p.ID, proc})
		}
	}
	for _, in := range s.tab.procs(r) {
		if in.cfg.Policy != config.Proxied {
			follow(in.cfg, in.replica, in.proc, in.proc.ID())
		}
	}
	v := s.tab.view()
	for _, u := range append(v.services, v.singletons...) {
		p := cfg.ProcessByID(u.cfg.ID)
		if u.releaseID != r.id || p == nil || p.Policy != u.cfg.Policy || p.IsHandoff() {
			continue
		}
		follow(p, 0, u.proc, u.cfg.ID)
	}
	var wg sync.WaitGroup
	for _, t := range restart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.emit(events.ProcessRestartRequested, map[string]any{events.KeyProcessID: t.id, events.KeyBaseID: t.base, events.KeyReleaseID: r.id,
				events.KeyReason: fmt.Sprintf("the port of %s moved from %d to %d", webID, prevPort, rv.Ports[webID])})
			if err := t.proc.Restart(ctx, reason); err != nil && ctx.Err() == nil {
				s.emit(events.ProcessRestartFailed, map[string]any{events.KeyProcessID: t.id, events.KeyReason: string(reason), events.KeyError: err.Error()})
			}
		}()
	}
	wg.Wait()
}

// namesPort reports whether p's rendered command, cwd or env differ
// between the ports of before and after: whether its templates name a
// port that changed.
func (s *Supervisor) namesPort(cfg *config.Config, p *config.Process, after, before releaseVars, replica int) bool {
	a, errA := p.Render(s.templateVars(cfg, p, after, replica))
	b, errB := p.Render(s.templateVars(cfg, p, before, replica))
	if errA != nil || errB != nil {
		return (errA == nil) != (errB == nil)
	}
	return a.Command != b.Command || a.Cwd != b.Cwd || !maps.Equal(a.Env, b.Env)
}
