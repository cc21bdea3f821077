package supervisor

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// Stop stops the active release (or the named one): its proxied process
// and companions. Services and singletons keep running, as in the Node
// original; the singletons it started are no longer restarted after a
// crash. With no active release the proxy answers 503. Stopping a release
// that is stopped already succeeds, as in the original: it records the
// stop again ("release stopped", a new stoppedAt).
func (s *Supervisor) Stop(ctx context.Context, releaseID string) error {
	if err := s.begin(ctx, "stop"); err != nil {
		return err
	}
	defer s.tab.end()
	r, singles, already, err := s.tab.stopTarget(releaseID)
	if err != nil {
		return err
	}
	for _, u := range singles {
		u.proc.SetAutoRestart(false)
	}
	stopErr := s.stopRelease(r)
	if already && stopErr == nil {
		s.tab.restopped(r)
		s.emit(events.ReleaseStopped, map[string]any{events.KeyReleaseID: r.id})
	}
	s.prune()
	if stopErr != nil {
		return fmt.Errorf("stop release %s: %w", r.id, stopErr)
	}
	return nil
}

// RestartResult lists the instance ids that were restarted.
type RestartResult struct {
	Restarted []string `json:"restarted"`
}

// Restart bounces non-proxied processes in place: all of them, one (base id
// for every replica, or an instance id), or one policy, in config order.
// Stopped or failed processes are revived. A policy no process has, an
// unknown one included, selects nothing, as in the Node original: the
// result is empty, or ErrNotFound when processID names a process.
func (s *Supervisor) Restart(ctx context.Context, processID, policy string) (*RestartResult, error) {
	if policy == string(config.Proxied) {
		return nil, refuse(ErrConflict, "the proxied process is never restarted in place (it would drop traffic); run rollbridgectl deploy to replace it without downtime")
	}
	if err := s.begin(ctx, "restart"); err != nil {
		return nil, err
	}
	defer s.tab.end()
	type target struct {
		id, base string
		proc     *process.Process
	}
	var targets []target
	var known []string
	v := s.tab.view()
	add := func(id, base string, pol config.Policy, p *process.Process) {
		known = append(known, id)
		switch {
		case processID != "" && processID != id && processID != base:
		case policy != "" && policy != string(pol):
		default:
			targets = append(targets, target{id, base, p})
		}
	}
	proxiedMatch, handoffMatch := false, false
	if r := v.activeRelease(); r != nil {
		for _, in := range r.procs {
			switch {
			case in.cfg.Policy == config.Proxied:
				proxiedMatch = proxiedMatch || processID == in.proc.ID()
				continue
			case in.cfg.IsHandoff():
				// Replaced by every deploy, like the proxied process; the
				// Node original cannot restart it either.
				handoffMatch = handoffMatch || processID == in.proc.ID()
				continue
			}
			add(in.proc.ID(), in.cfg.ID, in.cfg.Policy, in.proc)
		}
	}
	for _, u := range v.singletons {
		add(u.cfg.ID, u.cfg.ID, config.Singleton, u.proc)
	}
	for _, u := range v.services {
		add(u.cfg.ID, u.cfg.ID, config.Service, u.proc)
	}
	if proxiedMatch || processID != "" && s.cfg.Load().Proxied() != nil && s.cfg.Load().Proxied().ID == processID {
		return nil, refuse(ErrConflict, "%s is the proxied process and is never restarted in place (it would drop traffic); run rollbridgectl deploy to replace it without downtime", processID)
	}
	if handoffMatch {
		return nil, refuse(ErrConflict, "%s is a handoff service, which each deploy replaces with its release; it is never restarted in place; run rollbridgectl deploy to replace it", processID)
	}
	if processID != "" && len(targets) == 0 {
		return nil, refuse(ErrNotFound, "no managed process %q (companions exist only while a release is active); known: %s", processID, strings.Join(known, ", "))
	}
	// Config order, as in the Node original: a process that others depend
	// on (a broker service, say) is listed, and so restarted, first. One
	// that the current config no longer has (the release runs an older
	// one) comes last.
	order := map[string]int{}
	for i, p := range s.cfg.Load().Processes {
		order[p.ID] = i
	}
	rank := func(base string) int {
		if i, ok := order[base]; ok {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(targets, func(a, b target) int { return rank(a.base) - rank(b.base) })
	res := &RestartResult{Restarted: []string{}}
	for _, t := range targets {
		s.emit(events.ProcessRestartRequested, map[string]any{events.KeyProcessID: t.id, events.KeyBaseID: t.base})
		if err := t.proc.Restart(ctx, process.ReasonManual); err != nil {
			return res, fmt.Errorf("restart %s: %w", t.id, err)
		}
		res.Restarted = append(res.Restarted, t.id)
	}
	return res, nil
}

// ProcessLogs is one process's retained output.
type ProcessLogs struct {
	ID     string         `json:"id"`
	Source string         `json:"source"` // "release <id> (<state>)", "service" or "singleton"
	Logs   []process.Line `json:"logs"`
}

// Logs returns the retained output of every managed process, or of the
// processes matching id (base or instance id), in status order (releases
// oldest first) with the spec's source labels.
func (s *Supervisor) Logs(id string) ([]ProcessLogs, error) {
	var out []ProcessLogs
	v := s.tab.view()
	for _, r := range v.releases {
		for _, in := range r.procs {
			if id == "" || id == in.proc.ID() || id == in.cfg.ID {
				out = append(out, ProcessLogs{ID: in.proc.ID(), Source: "release " + r.id + " (" + string(r.state) + ")", Logs: in.proc.Logs()})
			}
		}
	}
	for _, u := range v.services {
		if id == "" || id == u.cfg.ID {
			out = append(out, ProcessLogs{ID: u.cfg.ID, Source: "service", Logs: u.proc.Logs()})
		}
	}
	for _, u := range v.singletons {
		if id == "" || id == u.cfg.ID {
			out = append(out, ProcessLogs{ID: u.cfg.ID, Source: "singleton", Logs: u.proc.Logs()})
		}
	}
	if id != "" && len(out) == 0 {
		return nil, refuse(ErrNotFound, "no managed process %q", id)
	}
	if out == nil {
		out = []ProcessLogs{}
	}
	return out, nil
}

// Events returns up to limit of the most recent events (all when limit <= 0).
func (s *Supervisor) Events(limit int) []events.Event { return s.events.Recent(limit) }

// Shutdown aborts a running deploy, stops every process (releases,
// singletons, services) and waits for the background drains. It is
// idempotent; after it, mutating commands fail with ErrShuttingDown.
func (s *Supervisor) Shutdown(ctx context.Context) {
	wait, first := s.tab.shutdown()
	if !first {
		return
	}
	s.cancel() // aborts a health check in progress and every drain
	if wait != nil {
		<-wait
	}
	rels, units := s.tab.everything()
	var wg sync.WaitGroup
	for _, r := range rels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.stopRelease(r); err != nil {
				s.internalError(err)
			}
		}()
	}
	stopAll(unitProcs(units))
	wg.Wait()
	s.bg.Wait()
}

// Counts summarises the state for sd_notify STATUS= lines.
type Counts struct {
	ActiveID         string
	Canary           string   // "v2 (10% of new clients)", "" when none runs
	Draining         []string // "v1 (3 connections)"
	FailedProcesses  []string
	DeployInProgress string
}

// Summary returns the counts behind the one-line status.
func (s *Supervisor) Summary() Counts {
	v := s.tab.view()
	c := Counts{DeployInProgress: v.running}
	if r := v.activeRelease(); r != nil {
		c.ActiveID = r.id
	}
	if v.canary != "" {
		c.Canary = fmt.Sprintf("%s (%g%% of new clients)", v.canary, percent(v.split.Share))
	}
	for _, r := range v.releases {
		if r.state == release.Draining && r.backend != nil {
			h, w := r.connections()
			c.Draining = append(c.Draining, fmt.Sprintf("%s (%d connections)", r.id, h+w))
		}
		if r.state == release.Active || r.state == release.Canary {
			for _, in := range r.procs {
				if in.proc.Brief().State == process.Failed {
					c.FailedProcesses = append(c.FailedProcesses, in.proc.ID())
				}
			}
		}
	}
	for _, units := range [][]unit{v.services, v.singletons} {
		for _, u := range units {
			if u.proc.Brief().State == process.Failed {
				c.FailedProcesses = append(c.FailedProcesses, u.cfg.ID)
			}
		}
	}
	sort.Strings(c.FailedProcesses)
	return c
}
