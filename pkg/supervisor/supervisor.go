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
	"github.com/rollbridge/rollbridge-go/pkg/release"
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
}

// Supervisor owns releases, services and singletons. Create it with New and
// end it with Shutdown.
type Supervisor struct {
	cfg     atomic.Pointer[config.Config]
	proxy   *proxy.Proxy
	events  *events.Log
	runner  process.Runner
	env     map[string]string
	output  func(map[string]any, process.Line)
	started time.Time

	// life ends at Shutdown: running deploys and drains abort.
	life   context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup // drain goroutines

	mu         sync.Mutex
	releases   []*rel // oldest first
	active     *rel
	services   map[string]*unit
	singletons map[string]*unit
	orphans    func() []state.Orphan // set by the state layer; nil means none
	restore    string                // why the last restore failed or was skipped ("" = fine)
	down       bool
	// running describes the mutating command in progress ("" when none);
	// opDone is closed when it ends.
	running string
	opDone  chan struct{}
}

// rel is one release's record. Fields are guarded by Supervisor.mu.
type rel struct {
	id, path, revision string
	cfg                *config.Config // the config this release was started with
	state              release.State
	createdAt          time.Time
	activatedAt        time.Time
	drainStartedAt     time.Time
	stoppedAt          time.Time
	lastError          string
	ports              map[string]int
	procs              []*instance
	backend            *proxy.Backend
	drainCancel        context.CancelFunc
	gen                int           // launch generation: bumped by every launch of this record
	stopping           bool          // a stop is in progress or done for this launch
	stopped            chan struct{} // closed once that stop finished; renewed by each launch
}

// instance is one managed process of a release.
type instance struct {
	cfg     *config.Process
	replica int
	proc    *process.Process
}

// unit is a service or a singleton: one daemon-level managed process.
type unit struct {
	cfg       *config.Process
	proc      *process.Process
	port      int
	releaseID string // the release whose template it runs
}

// New returns a Supervisor with nothing running.
func New(o Options) *Supervisor {
	life, cancel := context.WithCancel(context.Background())
	s := &Supervisor{
		proxy: o.Proxy, events: o.Events, runner: o.Runner, env: o.Env, output: o.Output,
		started: time.Now(), life: life, cancel: cancel,
		services: map[string]*unit{}, singletons: map[string]*unit{},
	}
	if s.env == nil {
		s.env = map[string]string{}
	}
	s.cfg.Store(o.Config)
	return s
}

// SetConfig replaces the config used from the next deploy, rollback or
// restart on. Running processes keep the definition they were started with.
func (s *Supervisor) SetConfig(c *config.Config) { s.cfg.Store(c) }

// SetOrphans installs the function status uses to list orphans.
func (s *Supervisor) SetOrphans(f func() []state.Orphan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orphans = f
}

// SetRestoreProblem records why restoring the last active release failed or
// was skipped, for status; "" clears it.
func (s *Supervisor) SetRestoreProblem(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restore = msg
}

// begin takes the operation slot without waiting: a second mutating command
// fails at once, naming the one that runs.
func (s *Supervisor) begin(what string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return refuse(ErrShuttingDown, "the daemon is shutting down")
	}
	if s.running != "" {
		return refuse(ErrBusy,
			"another command is running: %s; wait for it to finish (rollbridgectl status shows it) and try again", s.running)
	}
	s.running = fmt.Sprintf("%s (started %s)", what, time.Now().UTC().Format(time.RFC3339))
	s.opDone = make(chan struct{})
	return nil
}

func (s *Supervisor) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = ""
	close(s.opDone)
	s.opDone = nil
}

func (s *Supervisor) emit(msg string, data map[string]any) { s.events.Emit(msg, data) }

// newProcess wraps process.New with the supervisor's runner, events and output.
func (s *Supervisor) newProcess(spec process.Spec) *process.Process {
	var opts []process.Option
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
	return process.New(spec, s.runner, s.events, opts...)
}

func (r *rel) proxied() *instance {
	for _, in := range r.procs {
		if in.cfg.Policy == config.Proxied {
			return in
		}
	}
	return nil
}

// findLocked returns the release record with id, or nil.
func (s *Supervisor) findLocked(id string) *rel {
	for _, r := range s.releases {
		if r.id == id {
			return r
		}
	}
	return nil
}

// stopAll stops processes in parallel and returns when all are stopped.
// Stop reports through events and is bounded by each process's own stop
// sequence, so there is nothing to return.
func stopAll(procs []*process.Process) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.Stop(context.Background()) // see above
		}()
	}
	wg.Wait()
}

func unitProcs(units []*unit) []*process.Process {
	out := make([]*process.Process, len(units))
	for i, u := range units {
		out[i] = u.proc
	}
	return out
}

func instanceProcs(ins []*instance) []*process.Process {
	out := make([]*process.Process, len(ins))
	for i, in := range ins {
		out[i] = in.proc
	}
	return out
}
