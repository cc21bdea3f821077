package control

import "time"

// The results below are the final "success" lines of each command. They are
// the wire contract: their JSON names, and whether an absent value is null
// or left out, are what docs/protocol.md documents, and golden_test.go pins
// them. They are deliberately separate from the daemon's domain types, so a
// renamed field there cannot change the protocol.
//
// Slices keep the difference between nil (sent as null) and empty (sent as
// []), because the protocol does: the daemon fills the lists it documents as
// arrays.

// Result is the set of final answers; EncodeResult takes any of them.
type Result interface {
	DeployResult | Status | RestartResult | LogsResult | EventsResult | ShutdownResult
}

// DeployResult answers deploy and rollback.
type DeployResult struct {
	ActiveReleaseID   string  `json:"activeReleaseId"`
	PreviousReleaseID *string `json:"previousReleaseId"` // null when nothing was active
}

// RestartResult lists the instance ids that were restarted, in order.
type RestartResult struct {
	Restarted []string `json:"restarted"`
}

// LogsResult answers logs: one entry per matching process.
type LogsResult struct {
	Processes []ProcessLogs `json:"processes"`
}

// ProcessLogs is one process's retained output.
type ProcessLogs struct {
	ID     string    `json:"id"`
	Source string    `json:"source"` // "release <id>", "service" or "singleton"
	Logs   []LogLine `json:"logs"`
}

// LogLine is one captured line of a process's output.
type LogLine struct {
	At     time.Time `json:"at"`
	Line   string    `json:"line"`
	Stream string    `json:"stream"` // "stdout" or "stderr"
}

// EventsResult answers events, oldest first.
type EventsResult struct {
	Events []Event `json:"events"`
}

// Event is one entry of the daemon's event history. Data's keys depend on
// the message (docs/cli.md lists the events).
type Event struct {
	At      time.Time      `json:"at"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

// ShutdownResult answers shutdown, once every process stopped and the
// socket file is gone. Message is "shutdown".
type ShutdownResult struct {
	Message string `json:"message"`
}

// Status answers status and stop, in the Node original's shape plus the
// documented extensions (Daemon, a process's policy and port, a release's
// createdAt and error).
type Status struct {
	ActiveReleaseID *string     `json:"activeReleaseId"`
	Application     string      `json:"application"`
	Control         ControlInfo `json:"control"`
	Orphans         []Orphan    `json:"orphans"`
	Proxy           ProxyInfo   `json:"proxy"`
	Releases        []Release   `json:"releases"` // newest first
	Services        []Unit      `json:"services"`
	Singletons      []Unit      `json:"singletons"`
	Daemon          DaemonInfo  `json:"daemon"`
}

// ControlInfo describes the control socket.
type ControlInfo struct {
	Path string `json:"path"`
}

// ProxyInfo describes the stable listener; Port is the bound port.
type ProxyInfo struct {
	Host         string `json:"host"`
	Port         int    `json:"port"`
	UpstreamHost string `json:"upstreamHost"`
}

// DaemonInfo is about rollbridged itself.
type DaemonInfo struct {
	Pid               int       `json:"pid"`
	Version           string    `json:"version"`
	StartedAt         time.Time `json:"startedAt"`
	CommandInProgress *string   `json:"commandInProgress"`
	// RestoreProblem says why the last active release was not restored at
	// start; left out when there was none.
	RestoreProblem *string `json:"restoreProblem,omitempty"`
}

// Orphan is a process of a previous daemon that still runs.
type Orphan struct {
	ID        string `json:"id"`
	Pid       int    `json:"pid"`
	ReleaseID string `json:"releaseId"`
}

// Release is one release. State is one of starting, active, draining,
// stopped, failed.
type Release struct {
	ReleaseID       string         `json:"releaseId"`
	ReleasePath     string         `json:"releasePath"`
	Revision        *string        `json:"revision"`
	State           string         `json:"state"`
	Ports           map[string]int `json:"ports"`
	Connections     Connections    `json:"connections"`
	ConnectionCount int64          `json:"connectionCount"`
	CreatedAt       time.Time      `json:"createdAt"`
	ActivatedAt     *time.Time     `json:"activatedAt"`
	DrainStartedAt  *time.Time     `json:"drainStartedAt"`
	StoppedAt       *time.Time     `json:"stoppedAt"`
	Error           *string        `json:"error,omitempty"` // why it failed; left out otherwise
	Processes       []Process      `json:"processes"`
}

// Connections counts a release's open proxied connections.
type Connections struct {
	HTTP      int64 `json:"http"`
	WebSocket int64 `json:"websocket"`
}

// Process is one managed process. State is one of starting, running,
// stopping, stopped, failed; LastStartReason one of deploy, crash, manual,
// memory. RSSBytes and Children are sampled for memory-supervised
// processes only.
type Process struct {
	ID                  string     `json:"id"`
	Command             string     `json:"command"`
	Cwd                 string     `json:"cwd"`
	State               string     `json:"state"`
	Pid                 *int       `json:"pid"` // while the leader runs
	Restarts            int        `json:"restarts"`
	StartedAt           *time.Time `json:"startedAt"`
	UptimeMs            *int64     `json:"uptimeMs"` // only while running
	ExitCode            *int       `json:"exitCode"`
	ExitSignal          *string    `json:"exitSignal"`
	LastStartReason     *string    `json:"lastStartReason"`
	Logs                []LogLine  `json:"logs"`
	RSSBytes            uint64     `json:"rssBytes"`
	MemoryRestarts      int        `json:"memoryRestarts"`
	LastMemoryRestartAt *time.Time `json:"lastMemoryRestartAt"`
	Children            []Member   `json:"children"`
	Policy              string     `json:"policy"`
	Port                *int       `json:"port"`
}

// Member is one live process of a managed process group.
type Member struct {
	Pid      int    `json:"pid"`
	Command  string `json:"command"`
	RSSBytes uint64 `json:"rssBytes"`
}

// Unit is a service or singleton entry of the status.
type Unit struct {
	ID        string  `json:"id"`
	ReleaseID string  `json:"releaseId"`
	Process   Process `json:"process"`
}
