package events

// Name is the name of an event: what happened, in the spec's wording
// ("deploy starting", "traffic switched"). Every name the daemon emits is a
// constant below, with its journal priority beside it, so a new event cannot
// be emitted without deciding how loud it is.
type Name string

func (n Name) String() string { return string(n) }

// Priority is a syslog priority, as journald and syslog read it.
type Priority int

// The priorities the daemon uses.
const (
	PriErr     Priority = 3 // something the operator must act on: a deploy failed, a process gave up
	PriWarning Priority = 4 // something went wrong and was handled: a hook failed, memory is high
	PriNotice  Priority = 5 // a normal but significant change: traffic moved, a release stopped
	PriInfo    Priority = 6 // routine: a process started, a probe passed
)

// Daemon lifecycle.
const (
	DaemonStarted               Name = "daemon started"
	DaemonStopping              Name = "daemon stopping"
	DaemonStopped               Name = "daemon stopped"
	ConfigReloaded              Name = "config reloaded"
	ConfigReloadRefused         Name = "config reload refused"
	ProxyStoppedServing         Name = "proxy stopped serving"
	ControlSocketStoppedServing Name = "control socket stopped serving"
	CommandFailed               Name = "command failed"
	UpstreamError               Name = "upstream error"
	EventsDropped               Name = "events dropped"
	InternalError               Name = "internal error" // a broken invariant with no caller to report to
)

// Deploys and releases.
const (
	DeployStarting               Name = "deploy starting"
	DeployFailed                 Name = "deploy failed"
	RollbackStarting             Name = "rollback starting"
	HealthCheck                  Name = "health check"
	ReleaseHealthy               Name = "release healthy"
	TrafficSwitched              Name = "traffic switched"
	ReleaseDrained               Name = "release drained"
	ReleaseStopped               Name = "release stopped"
	ServiceStarted               Name = "service started"
	ServiceTemplateRefreshFailed Name = "service template refresh failed"
	SingletonReplaced            Name = "singleton replaced"
	ProcessRestartRequested      Name = "process restart requested"
)

// Processes.
const (
	ProcessStarted      Name = "process started"
	ProcessExited       Name = "process exited"
	ProcessStartFailed  Name = "process start failed"
	ProcessStopFailed   Name = "process stop failed"
	RestartLimitReached Name = "restart limit reached"
	LifecycleHookFailed Name = "lifecycle hook failed"
	MemoryWarning       Name = "memory warning"
	MemoryLimitExceeded Name = "memory limit exceeded"
)

// State file, restore and orphans.
const (
	StateFileUnreadable    Name = "state file unreadable"
	StateFileNotRemoved    Name = "state file not removed"
	StateSaveFailed        Name = "state save failed"
	StateSavedAgain        Name = "state saved again"
	OrphanedProcessesFound Name = "orphaned processes found"
	RestoreStarting        Name = "restore starting"
	RestoreSkipped         Name = "restore skipped"
	RestoreFailed          Name = "restore failed"
	ReleaseRestored        Name = "release restored"
	// The release named by rollbridged --release-id (a boot release).
	BootstrapSkipped          Name = "bootstrap skipped"
	BootstrapActivationFailed Name = "bootstrap activation failed"
)

// priorities is the one table of how loud each event is; names not in it
// are PriInfo.
var priorities = map[Name]Priority{
	DeployFailed:                 PriErr,
	InternalError:                PriErr,
	RestartLimitReached:          PriErr,
	RestoreFailed:                PriErr,
	BootstrapActivationFailed:    PriErr,
	ProcessStopFailed:            PriErr,
	StateSaveFailed:              PriErr,
	ProxyStoppedServing:          PriErr,
	ControlSocketStoppedServing:  PriErr,
	MemoryLimitExceeded:          PriWarning,
	MemoryWarning:                PriWarning,
	CommandFailed:                PriWarning,
	LifecycleHookFailed:          PriWarning,
	ProcessStartFailed:           PriWarning,
	ConfigReloadRefused:          PriWarning,
	UpstreamError:                PriWarning,
	StateFileUnreadable:          PriWarning,
	StateFileNotRemoved:          PriWarning,
	OrphanedProcessesFound:       PriWarning,
	RestoreSkipped:               PriWarning,
	BootstrapSkipped:             PriNotice,
	ServiceTemplateRefreshFailed: PriWarning,
	EventsDropped:                PriWarning,
	TrafficSwitched:              PriNotice,
	ReleaseStopped:               PriNotice,
	ReleaseDrained:               PriNotice,
	ReleaseRestored:              PriNotice,
	DaemonStarted:                PriNotice,
	DaemonStopped:                PriNotice,
	ConfigReloaded:               PriNotice,
	StateSavedAgain:              PriNotice,
}

// Priority is how loud the event is in the journal.
func (n Name) Priority() Priority {
	if p, ok := priorities[n]; ok {
		return p
	}
	return PriInfo
}

// Data keys every emitter uses for the same things, so the journal's
// ROLLBRIDGE_* fields and `rollbridgectl events` read the same everywhere.
const (
	KeyApplication = "application"
	KeyReleaseID   = "releaseId"
	KeyProcessID   = "processId" // the base id from the config ("worker")
	KeyID          = "id"        // the instance id ("worker#2"), or a service/singleton id
	KeyPolicy      = "policy"
	KeyPid         = "pid"
	KeyError       = "error"
	KeyReason      = "reason"
	KeyPath        = "path"
	KeyHint        = "hint"
	KeyCount       = "count"
)
