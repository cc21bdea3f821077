package supervisor

import (
	"context"
	"fmt"
	"strings"
	"syscall"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"golang.org/x/sys/unix"
)

// Every deploy and rollback re-reads the config file (Options.LoadConfig),
// as the Node original does since 0.1.12, so a changed command, env, health
// check, hook or stop, restart or memory setting needs no daemon restart.
// The new config is used for the new release from its first process on, and
// adopted (status, restart, retention, the next comparison) only once that
// release is healthy: a deploy that fails leaves the running config as it
// was. Changes of reload class restart cannot be applied by a deploy: the
// listeners, and the topology the running services and singletons were
// built from (see config.Config.Processes).

// deployConfig is the config a deploy runs with: the file as it is now, or
// an error naming what is wrong with it. Nothing has changed when it fails.
func (s *Supervisor) deployConfig(ctx context.Context) (*config.Config, error) {
	cur := s.cfg.Load()
	if s.load == nil {
		return cur, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.life, cancel) // a shutdown does not wait for the evaluation
	defer stop()
	next, err := s.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("re-read the config for this deploy: %w; nothing was changed", err)
	}
	if err := s.reloadable(cur, next); err != nil {
		return nil, err
	}
	return next, nil
}

// rollbackConfig is the config a rollback runs with. A rollback must work
// when the file is broken or changed beyond what a deploy may apply (that
// may be the very reason for it), so then it runs with the last good
// config, and says so: an event, a progress line, and problem for the
// answer ("" when the file was used).
func (s *Supervisor) rollbackConfig(ctx context.Context, progress Progress) (cfg *config.Config, problem string) {
	next, err := s.deployConfig(ctx)
	if err == nil {
		return next, ""
	}
	cur := s.cfg.Load()
	problem = fmt.Sprintf("the rollback used the last good config (%s), because %v", cur.Path, err)
	data := map[string]any{events.KeyError: err.Error(), "kept": "the last good config", "command": "rollback"}
	s.emit(events.ConfigReloadRefused, data)
	progress.send(events.ConfigReloadRefused, data)
	return cur, problem
}

// reloadable refuses what a deploy cannot apply: every restart-class change
// (config.Diff), and a port change of a running persistent service, which
// keeps the port it has until the daemon restarts.
func (s *Supervisor) reloadable(cur, next *config.Config) error {
	var paths, details []string
	for _, ch := range config.Diff(cur, next) {
		if ch.Reload == config.ReloadRestart {
			paths = append(paths, ch.Path)
			details = append(details, ch.String())
		}
	}
	for _, u := range s.tab.view().services {
		i := processIndex(next, u.cfg.ID)
		if i < 0 || next.Processes[i].IsHandoff() || next.Processes[i].Policy != config.Service {
			continue // a topology change, listed above
		}
		p := &next.Processes[i]
		if holds := u.port != 0; holds == (p.Port != nil) && (!holds || u.port >= p.Port.From && u.port <= p.Port.To) {
			continue
		}
		path := fmt.Sprintf("processes[%d] (%s).port", i, p.ID)
		paths = append(paths, path)
		details = append(details, fmt.Sprintf("%s does not fit the running service, which keeps its port (%s)", path, portText(u.port)))
	}
	if len(paths) == 0 {
		return nil
	}
	return refuse(ErrConflict, "config changes to %s cannot be applied live; restart the daemon before deploying, or undo them (%s)",
		strings.Join(paths, ", "), strings.Join(details, "; "))
}

func processIndex(cfg *config.Config, id string) int {
	for i := range cfg.Processes {
		if cfg.Processes[i].ID == id {
			return i
		}
	}
	return -1
}

func portText(port int) string {
	if port == 0 {
		return "none"
	}
	return fmt.Sprint(port)
}

// adopt makes next, which a deploy of release id read and used, the
// running config, once that release is healthy.
func (s *Supervisor) adopt(next *config.Config, id string) {
	cur := s.cfg.Load()
	if next == cur {
		return
	}
	changes := config.Diff(cur, next)
	s.cfg.Store(next)
	if s.adopted != nil {
		s.adopted(next)
	}
	if len(changes) == 0 {
		return
	}
	paths := make([]string, len(changes))
	for i, ch := range changes {
		paths[i] = ch.Path
	}
	s.emit(events.ConfigReloaded, map[string]any{events.KeyPath: next.Path, events.KeyReleaseID: id, "changed": paths})
}

// stopSettings is how cfg says p is stopped.
func stopSettings(p *config.Process) process.StopSettings {
	st := process.StopSettings{StopSignal: syscall.Signal(unix.SignalNum(p.StopSignal)), GracefulStop: p.GracefulStop()}
	if p.GracefulStopIndefinite() {
		st.GracefulStop = process.Indefinite
	}
	if l := p.Lifecycle; l != nil {
		st.Lifecycle = process.Lifecycle{QuietCommand: l.QuietCommand, DrainCommand: l.DrainCommand,
			StopCommand: l.StopCommand, DrainTimeout: l.DrainTimeout()}
	}
	return st
}
