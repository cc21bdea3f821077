package process

import (
	"context"
	"syscall"
	"time"
)

// Spec is a fully rendered process definition: templates are already
// resolved by the caller.
type Spec struct {
	ID           string   // instance id, e.g. "web" or "worker#1"
	Command      string   // run as /bin/sh -c Command
	Dir          string   // working directory; must exist
	Env          []string // complete environment, KEY=VALUE
	StopSignal   syscall.Signal
	Lifecycle    Lifecycle
	GracefulStop time.Duration // between stopSignal/stopCommand and SIGKILL
	RestartDelay time.Duration // base delay before an automatic restart
	Restart      RestartPolicy
	Memory       *MemoryPolicy // nil: no memory supervision
	OutputLines  int           // lines kept; <= 0 means 50
	// Fields are added to the data of every event this process emits
	// (releaseId, policy, processId, ...).
	Fields map[string]any
}

// Lifecycle holds the stop hooks, run through /bin/sh with the process's
// environment plus ROLLBRIDGE_PID.
type Lifecycle struct {
	QuietCommand string
	DrainCommand string
	StopCommand  string
	DrainTimeout time.Duration // 0 skips the drain step
}

// RestartPolicy bounds automatic restarts after a crash.
type RestartPolicy struct {
	MaxRestarts   int           // -1 unlimited, 0 never
	Window        time.Duration // rolling window for MaxRestarts and backoff; 0 = lifetime
	BackoffFactor float64       // < 1 is treated as 1
	MaxDelay      time.Duration // 0 = no cap
}

// MemoryPolicy restarts the process when its group's RSS passes LimitBytes.
type MemoryPolicy struct {
	LimitBytes    uint64
	WarnBytes     uint64 // 0: no warning
	CheckInterval time.Duration
}

// StartReason says why a process was (last) started.
type StartReason string

// The start reasons of the spec.
const (
	ReasonDeploy StartReason = "deploy"
	ReasonCrash  StartReason = "crash"
	ReasonManual StartReason = "manual"
	ReasonMemory StartReason = "memory"
)

// State is a process's lifecycle state.
type State string

// Process states, with the spec's names.
const (
	Starting State = "starting"
	Running  State = "running"
	Stopping State = "stopping"
	Stopped  State = "stopped"
	Failed   State = "failed"
)

func (s State) String() string { return string(s) }

// Line is one captured line of output.
type Line struct {
	At     time.Time `json:"at"`
	Line   string    `json:"line"`
	Stream string    `json:"stream"` // "stdout" or "stderr"
}

// Member is one process of a managed process group.
type Member struct {
	Pid      int    `json:"pid"`
	Command  string `json:"command"`
	RSSBytes uint64 `json:"rssBytes"`
}

// Runner starts OS-level children. ExecRunner is the default; another
// implementation (say, transient systemd units) can replace it without
// changing Process or its callers.
type Runner interface {
	// Start spawns spec and sends every output line to out. It fails
	// without leaving anything running.
	Start(ctx context.Context, spec Spec, out func(Line)) (Handle, error)
}

// Handle is one running child, the leader of its own process group.
type Handle interface {
	Pid() int
	// Done is closed when the group leader has exited.
	Done() <-chan struct{}
	// ExitStatus is valid after Done: an exit code, or the signal name
	// ("SIGKILL") that ended the leader.
	ExitStatus() (code *int, signal string)
	// Signal sends sig to every member of the group.
	Signal(sig syscall.Signal) error
	// GroupAlive reports whether any (non-zombie) member is left.
	GroupAlive() bool
	// Members lists the group's live members with their RSS.
	Members() []Member
	// Close waits (briefly) for the output to be read to its end and
	// releases the handle. Call it once the group is gone.
	Close()
}
