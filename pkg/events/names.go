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
	MetricsStoppedServing       Name = "metrics stopped serving"
	ProxyListening              Name = "proxy listening"
	ControlSocketListening      Name = "control socket listening"
	CommandFailed               Name = "command failed"
	// HostDrained and HostUndrained: the host health answer
	// (proxy.hostHealthPath) turned 503 for the load balancer, and back.
	HostDrained     Name = "host drained"
	HostUndrained   Name = "host undrained"
	ProxyError      Name = "proxy error"       // the app refused or broke a proxied connection
	RequestsNotHeld Name = "requests not held" // the hold answered 503: no release served in time, or too many waited
	TrafficDrained  Name = "traffic drained"   // a pause with --drain: the requests in flight finished
	MaintenanceOn   Name = "maintenance on"    // every request answered 503 with the maintenance page
	MaintenanceOff  Name = "maintenance off"
	EventsDropped   Name = "events dropped"
	InternalError   Name = "internal error" // a broken invariant with no caller to report to
	// UnitSettingsIgnored: the config gives processes systemd unit
	// settings (sandboxing, limits) but the daemon runs them with the
	// exec runtime, which cannot apply them. Said once per daemon.
	UnitSettingsIgnored Name = "unit settings ignored"
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
	// A listener on a release's port that none of its processes holds:
	// traffic was not switched to it.
	ForeignListener Name = "foreign listener"
	// The proxied process was replaced by a new instance on a new port
	// (a memory restart), and the old instance's drain ended.
	ProcessReplaced Name = "process replaced"
	ProcessDrained  Name = "process drained"
	// The proxied process of the active release exited: no traffic goes
	// to its port until it runs again and still owns it. rollbridgectl
	// pause and resume (or the pause's timeout) emit them too, with
	// "reason" instead of a process id.
	TrafficPaused  Name = "traffic paused"
	TrafficResumed Name = "traffic resumed"
	// A canary (an extension: deploy --canary) took its share of new
	// clients, its share changed, it became the active release, or it
	// was aborted and drains.
	CanaryStarted      Name = "canary started"
	CanaryShareChanged Name = "canary share changed"
	CanaryPromoted     Name = "canary promoted"
	CanaryAborted      Name = "canary aborted"
)

// Processes.
const (
	ProcessStarted       Name = "process started"
	ProcessExited        Name = "process exited"
	ProcessRestartFailed Name = "process restart failed" // an automatic restart after a crash could not spawn
	ProcessStopFailed    Name = "process stop failed"
	ProcessStopTimedOut  Name = "process stop timed out; sending SIGKILL"
	ProcessStopWaiting   Name = "process stop waiting" // gracefulStopMs: "indefinite": no SIGKILL will come
	RestartLimitReached  Name = "restart limit reached"
	MemoryWarning        Name = "memory warning"
	MemoryLimitExceeded  Name = "memory limit exceeded"
	MemoryRestartFailed  Name = "memory restart failed"
	// ProcessAdopted: a run an earlier daemon started (a systemd unit) is
	// supervised again, without a restart.
	ProcessAdopted Name = "process adopted"
)

// Lifecycle hooks, one name per hook and outcome as the spec spells them:
// "<hook> failed" (could not run), "<hook> timed out", "<hook> exited
// non-zero", "<hook> exited on signal". HookEvents picks the set of a hook.
const (
	QuietCommandFailed         Name = "quiet command failed"
	QuietCommandTimedOut       Name = "quiet command timed out"
	QuietCommandExitedNonZero  Name = "quiet command exited non-zero"
	QuietCommandExitedOnSignal Name = "quiet command exited on signal"
	DrainCommandFailed         Name = "drain command failed"
	DrainCommandTimedOut       Name = "drain command timed out"
	DrainCommandExitedNonZero  Name = "drain command exited non-zero"
	DrainCommandExitedOnSignal Name = "drain command exited on signal"
	StopCommandFailed          Name = "stop command failed"
	StopCommandTimedOut        Name = "stop command timed out"
	StopCommandExitedNonZero   Name = "stop command exited non-zero"
	StopCommandExitedOnSignal  Name = "stop command exited on signal"
)

// HookOutcomes are the event names of one lifecycle hook's failures.
type HookOutcomes struct {
	Failed, TimedOut, ExitedNonZero, ExitedOnSignal Name
}

// HookEvents returns the event names of the lifecycle hook whose config
// field is field ("quietCommand", "drainCommand" or "stopCommand"); ok is
// false for any other field.
func HookEvents(field string) (names HookOutcomes, ok bool) {
	switch field {
	case "quietCommand":
		return HookOutcomes{QuietCommandFailed, QuietCommandTimedOut, QuietCommandExitedNonZero, QuietCommandExitedOnSignal}, true
	case "drainCommand":
		return HookOutcomes{DrainCommandFailed, DrainCommandTimedOut, DrainCommandExitedNonZero, DrainCommandExitedOnSignal}, true
	case "stopCommand":
		return HookOutcomes{StopCommandFailed, StopCommandTimedOut, StopCommandExitedNonZero, StopCommandExitedOnSignal}, true
	}
	return HookOutcomes{}, false
}

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
	// ReleaseAdopted: the active release's processes were found still
	// running (systemd units) and serve again without a restart.
	ReleaseAdopted Name = "release adopted"
	// OrphanedUnitsFound: units in the application's slice that no
	// recorded release or service accounts for.
	OrphanedUnitsFound Name = "orphaned units found"
	// LeftoverStopped: a run an earlier daemon left that the new one did
	// not take back (a second copy of the proxied process, a process gone
	// from the config) ended with its stop sequence.
	LeftoverStopped Name = "leftover unit stopped"
	// ConnectionsResumed: upgraded connections a previous daemon parked in
	// systemd's fd store are copied again, counted on their release; those
	// whose release no longer serves are closed.
	ConnectionsResumed Name = "connections resumed"
	// ClientsParked: at a daemon restart, the client connections were
	// parked in systemd's fd store at their request boundary (idle
	// keep-alive connections; requests in flight finished first), for
	// the next daemon to serve their next request.
	ClientsParked Name = "client connections parked"
)

// priorities is the one table of how loud each event is; names not in it
// are PriInfo.
var priorities = map[Name]Priority{
	DeployFailed:                PriErr,
	ForeignListener:             PriErr,
	InternalError:               PriErr,
	RestartLimitReached:         PriErr,
	RestoreFailed:               PriErr,
	BootstrapActivationFailed:   PriErr,
	ProcessStopFailed:           PriErr,
	StateSaveFailed:             PriErr,
	ProxyStoppedServing:         PriErr,
	ControlSocketStoppedServing: PriErr,
	MetricsStoppedServing:       PriErr,
	MemoryLimitExceeded:         PriWarning,
	MemoryWarning:               PriWarning,
	MemoryRestartFailed:         PriWarning,
	// A hook failed; the stop sequence went on without it.
	QuietCommandFailed:           PriWarning,
	QuietCommandTimedOut:         PriWarning,
	QuietCommandExitedNonZero:    PriWarning,
	QuietCommandExitedOnSignal:   PriWarning,
	DrainCommandFailed:           PriWarning,
	DrainCommandTimedOut:         PriWarning,
	DrainCommandExitedNonZero:    PriWarning,
	DrainCommandExitedOnSignal:   PriWarning,
	StopCommandFailed:            PriWarning,
	StopCommandTimedOut:          PriWarning,
	StopCommandExitedNonZero:     PriWarning,
	StopCommandExitedOnSignal:    PriWarning,
	CommandFailed:                PriWarning,
	ProcessRestartFailed:         PriWarning,
	ProcessStopTimedOut:          PriWarning,
	ConfigReloadRefused:          PriWarning,
	ProxyError:                   PriWarning,
	RequestsNotHeld:              PriWarning,
	TrafficDrained:               PriNotice,
	MaintenanceOn:                PriNotice,
	MaintenanceOff:               PriNotice,
	StateFileUnreadable:          PriWarning,
	StateFileNotRemoved:          PriWarning,
	OrphanedProcessesFound:       PriWarning,
	RestoreSkipped:               PriWarning,
	BootstrapSkipped:             PriNotice,
	ServiceTemplateRefreshFailed: PriWarning,
	EventsDropped:                PriWarning,
	TrafficSwitched:              PriNotice,
	ProcessReplaced:              PriNotice,
	TrafficPaused:                PriWarning,
	TrafficResumed:               PriNotice,
	CanaryStarted:                PriNotice,
	CanaryShareChanged:           PriNotice,
	CanaryPromoted:               PriNotice,
	CanaryAborted:                PriNotice,
	ReleaseStopped:               PriNotice,
	ReleaseDrained:               PriNotice,
	ReleaseRestored:              PriNotice,
	ReleaseAdopted:               PriNotice,
	OrphanedUnitsFound:           PriWarning,
	UnitSettingsIgnored:          PriWarning,
	LeftoverStopped:              PriNotice,
	ClientsParked:                PriInfo,
	DaemonStarted:                PriNotice,
	HostDrained:                  PriNotice,
	HostUndrained:                PriNotice,
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
	KeyProcessID   = "processId" // the instance id ("worker#2"), as the spec's process events carry it
	KeyBaseID      = "baseId"    // the base id from the config ("worker"); the journal's ROLLBRIDGE_PROCESS_ID
	KeyID          = "id"        // the instance id ("worker#2"), or a service/singleton id
	KeyPolicy      = "policy"
	KeyPid         = "pid"
	KeyError       = "error"
	KeyReason      = "reason"
	KeyPath        = "path"
	KeyHint        = "hint"
	KeyCount       = "count"
)
