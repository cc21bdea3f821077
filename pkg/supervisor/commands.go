package supervisor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// Stop stops the active release (or the named one). Stopping the active
// release also stops the singletons, which run its code; services keep
// running. With no active release the proxy answers 503.
func (s *Supervisor) Stop(ctx context.Context, releaseID string) error {
	if err := s.begin("stop"); err != nil {
		return err
	}
	defer s.end()
	s.mu.Lock()
	r := s.active
	if releaseID != "" {
		r = s.findLocked(releaseID)
		if r == nil {
			s.mu.Unlock()
			return refuse(ErrNotFound, "release %s is not retained; retained releases: %s", releaseID, s.retainedIDsLocked())
		}
	}
	if r == nil {
		s.mu.Unlock()
		return refuse(ErrNotFound, "no release is active; nothing to stop")
	}
	wasActive := r == s.active
	if !r.state.Live() {
		s.mu.Unlock()
		return refuse(ErrConflict, "release %s is already %s", r.id, r.state)
	}
	var singles []*unit
	if wasActive {
		for id, u := range s.singletons {
			singles = append(singles, u)
			delete(s.singletons, id)
		}
	}
	s.mu.Unlock()
	s.stopRelease(r)
	stopAll(unitProcs(singles))
	s.mu.Lock()
	s.pruneLocked(time.Now())
	s.mu.Unlock()
	return nil
}

// RestartResult lists the instance ids that were restarted.
type RestartResult struct {
	Restarted []string `json:"restarted"`
}

// Restart bounces non-proxied processes in place: all of them, one (base id
// for every replica, or an instance id), or one policy. Stopped or failed
// processes are revived.
func (s *Supervisor) Restart(ctx context.Context, processID, policy string) (*RestartResult, error) {
	if policy == string(config.Proxied) {
		return nil, refuse(ErrConflict, "the proxied process is never restarted in place (it would drop traffic); run rollbridgectl deploy to replace it without downtime")
	}
	if policy != "" && policy != string(config.Companion) && policy != string(config.Singleton) && policy != string(config.Service) {
		return nil, refuse(ErrInvalid, "unknown policy %q; use companion, singleton or service", policy)
	}
	if err := s.begin("restart"); err != nil {
		return nil, err
	}
	defer s.end()
	type target struct {
		id   string
		proc *process.Process
	}
	var targets []target
	var known []string
	s.mu.Lock()
	add := func(id, base string, pol config.Policy, p *process.Process) {
		known = append(known, id)
		switch {
		case processID != "" && processID != id && processID != base:
		case policy != "" && policy != string(pol):
		default:
			targets = append(targets, target{id, p})
		}
	}
	proxiedMatch := false
	if r := s.active; r != nil {
		for _, in := range r.procs {
			if in.cfg.Policy == config.Proxied {
				if processID == in.proc.ID() {
					proxiedMatch = true
				}
				continue
			}
			add(in.proc.ID(), in.cfg.ID, in.cfg.Policy, in.proc)
		}
	}
	for _, u := range sortedUnits(s.singletons) {
		add(u.cfg.ID, u.cfg.ID, config.Singleton, u.proc)
	}
	for _, u := range sortedUnits(s.services) {
		add(u.cfg.ID, u.cfg.ID, config.Service, u.proc)
	}
	s.mu.Unlock()
	if proxiedMatch || processID != "" && s.cfg.Load().Proxied() != nil && s.cfg.Load().Proxied().ID == processID {
		return nil, refuse(ErrConflict, "%s is the proxied process and is never restarted in place (it would drop traffic); run rollbridgectl deploy to replace it without downtime", processID)
	}
	if processID != "" && len(targets) == 0 {
		return nil, refuse(ErrNotFound, "no managed process %q (companions exist only while a release is active); known: %s", processID, strings.Join(known, ", "))
	}
	res := &RestartResult{Restarted: []string{}}
	for _, t := range targets {
		s.emit("process restart requested", map[string]any{"id": t.id})
		if err := t.proc.Restart(ctx, process.ReasonManual); err != nil {
			return res, fmt.Errorf("restart %s: %w", t.id, err)
		}
		res.Restarted = append(res.Restarted, t.id)
	}
	return res, nil
}

func sortedUnits(m map[string]*unit) []*unit {
	out := make([]*unit, 0, len(m))
	for _, u := range m {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cfg.ID < out[j].cfg.ID })
	return out
}

// ProcessLogs is one process's retained output.
type ProcessLogs struct {
	ID     string         `json:"id"`
	Source string         `json:"source"` // "release <id>", "service" or "singleton"
	Logs   []process.Line `json:"logs"`
}

// Logs returns the retained output of every managed process, or of the
// processes matching id (base or instance id).
func (s *Supervisor) Logs(id string) ([]ProcessLogs, error) {
	var out []ProcessLogs
	s.mu.Lock()
	for i := len(s.releases) - 1; i >= 0; i-- {
		r := s.releases[i]
		for _, in := range r.procs {
			if id == "" || id == in.proc.ID() || id == in.cfg.ID {
				out = append(out, ProcessLogs{ID: in.proc.ID(), Source: "release " + r.id, Logs: in.proc.Logs()})
			}
		}
	}
	for _, u := range sortedUnits(s.services) {
		if id == "" || id == u.cfg.ID {
			out = append(out, ProcessLogs{ID: u.cfg.ID, Source: "service", Logs: u.proc.Logs()})
		}
	}
	for _, u := range sortedUnits(s.singletons) {
		if id == "" || id == u.cfg.ID {
			out = append(out, ProcessLogs{ID: u.cfg.ID, Source: "singleton", Logs: u.proc.Logs()})
		}
	}
	s.mu.Unlock()
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
	s.mu.Lock()
	if s.down {
		s.mu.Unlock()
		return
	}
	s.down = true
	wait := s.opDone
	s.mu.Unlock()
	s.cancel() // aborts a health check in progress and every drain
	if wait != nil {
		<-wait
	}
	s.mu.Lock()
	rels := append([]*rel(nil), s.releases...)
	units := make([]*unit, 0, len(s.services)+len(s.singletons))
	for _, u := range s.singletons {
		units = append(units, u)
	}
	for _, u := range s.services {
		units = append(units, u)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range rels {
		wg.Add(1)
		go func() { defer wg.Done(); s.stopRelease(r) }()
	}
	stopAll(unitProcs(units))
	wg.Wait()
	s.bg.Wait()
}

// Counts summarises the state for sd_notify STATUS= lines.
type Counts struct {
	ActiveID         string
	Draining         []string // "v1 (3 connections)"
	FailedProcesses  []string
	DeployInProgress string
}

// Summary returns the counts behind the one-line status.
func (s *Supervisor) Summary() Counts {
	var c Counts
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active != nil {
		c.ActiveID = s.active.id
	}
	c.DeployInProgress = s.running
	for _, r := range s.releases {
		if r.state == release.Draining && r.backend != nil {
			h, w := r.backend.Connections()
			c.Draining = append(c.Draining, fmt.Sprintf("%s (%d connections)", r.id, h+w))
		}
		if r.state == release.Active {
			for _, in := range r.procs {
				if in.proc.Brief().State == process.Failed {
					c.FailedProcesses = append(c.FailedProcesses, in.proc.ID())
				}
			}
		}
	}
	for _, m := range []map[string]*unit{s.services, s.singletons} {
		for _, u := range m {
			if u.proc.Brief().State == process.Failed {
				c.FailedProcesses = append(c.FailedProcesses, u.cfg.ID)
			}
		}
	}
	sort.Strings(c.FailedProcesses)
	return c
}
