package supervisor

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// Options configure a Supervisor. Config, Proxy, Events and Runner are required.
type Options struct {
	Config *config.Config
	Proxy  *proxy.Proxy
	Events *events.Log
	Runner process.Runner
	// Env is the daemon's environment: the base of every process's
	// environment and the source of {{env.NAME}}.
	Env map[string]string
	// Output receives every line a managed process prints (journald forwarding).
	Output func(fields map[string]any, l process.Line)
	// LoadConfig, when set, re-reads the config file: every deploy and
	// rollback starts with it (see Deploy). nil keeps Config, or what
	// SetConfig gave, for every deploy. Its ctx ends when the command's
	// client hangs up or the supervisor shuts down, and it must then
	// return promptly: the daemon passes a config.Loader, whose
	// evaluation is bounded in time and memory.
	LoadConfig func(ctx context.Context) (*config.Config, error)
	// OnConfig, when set, is called with a config a deploy or rollback
	// re-read and adopted, right after the supervisor adopted it, so the
	// daemon's own copy follows. It must not call back into the Supervisor.
	OnConfig func(*config.Config)
}

// Supervisor owns releases, services and singletons. Create it with New and
// end it with Shutdown. Its methods are safe for concurrent use.
type Supervisor struct {
	cfg     atomic.Pointer[config.Config]
	events  *events.Log
	runner  process.Runner
	env     map[string]string
	output  func(map[string]any, process.Line)
	load    func(context.Context) (*config.Config, error)
	adopted func(*config.Config)
	started time.Time
	// budget caps the output all of the supervisor's processes keep
	// together, so that replicas and retained releases cannot multiply it.
	budget *process.OutputBudget

	// life ends at Shutdown: running deploys and drains abort.
	life   context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup // drain goroutines

	tab *table // every piece of mutable state, and its only writer
}

// New returns a Supervisor with nothing running.
func New(o Options) *Supervisor {
	life, cancel := context.WithCancel(context.Background())
	s := &Supervisor{
		events: o.Events, runner: o.Runner, env: o.Env, output: o.Output, load: o.LoadConfig, adopted: o.OnConfig,
		started: time.Now(), life: life, cancel: cancel, tab: newTable(o.Proxy),
		budget: process.NewOutputBudget(process.MaxDaemonOutput, process.MaxProcessOutput),
	}
	if s.env == nil {
		s.env = map[string]string{}
	}
	s.cfg.Store(o.Config)
	return s
}

// SetConfig replaces the config used from the next deploy, rollback or
// restart on (a deploy with LoadConfig set re-reads the file instead, and
// compares what it read with this one). Running processes keep the
// definition they were started with.
func (s *Supervisor) SetConfig(c *config.Config) { s.cfg.Store(c) }

// SetOrphans installs the function status uses to list orphans.
func (s *Supervisor) SetOrphans(f func() []state.Orphan) { s.tab.setOrphans(f) }

// SetRestoreProblem records why restoring the last active release failed or
// was skipped, for status; "" clears it.
func (s *Supervisor) SetRestoreProblem(msg string) { s.tab.setRestoreProblem(msg) }

// begin takes the running-command slot for a command someone asked for.
// While a command the supervisor started itself runs (the replacement of
// the proxied process, bounded by its health check), it waits for that one
// instead of failing, until ctx ends, and no new one starts meanwhile; any
// other running command fails it at once with ErrBusy.
func (s *Supervisor) begin(ctx context.Context, what string) error {
	for {
		wait, err := s.tab.beginOrWait(what)
		if wait == nil {
			return err
		}
		select {
		case <-wait:
			s.tab.doneWaiting()
		case <-ctx.Done():
			s.tab.doneWaiting()
			return fmt.Errorf("%s: waiting for the running replacement of the proxied process: %w", what, ctx.Err())
		}
	}
}

func (s *Supervisor) emit(name events.Name, data map[string]any) { s.events.Emit(name, data) }

// newProcess wraps process.New with the supervisor's runner, events,
// output and output budget, and opts.
func (s *Supervisor) newProcess(spec process.Spec, opts ...process.Option) *process.Process {
	return s.newProcessSink(spec, s.events, opts...)
}

// newProcessSink is newProcess with the process's events going to sink.
func (s *Supervisor) newProcessSink(spec process.Spec, sink events.Sink, opts ...process.Option) *process.Process {
	opts = append(opts, process.WithOutputBudget(s.budget))
	if s.output != nil {
		fields := spec.Fields
		out := s.output
		opts = append(opts, process.WithOutput(func(id string, l process.Line) {
			f := make(map[string]any, len(fields)+1)
			for k, v := range fields {
				f[k] = v
			}
			f["id"] = id
			out(f, l)
		}))
	}
	return process.New(spec, s.runner, sink, opts...)
}
