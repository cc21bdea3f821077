package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// The results below are the final "success" lines of each command. They are
// the wire contract: their JSON names, their key order, and whether an
// absent value is null or left out, are what docs/protocol.md documents,
// and golden_test.go pins them. They are deliberately separate from the
// daemon's domain types, so a renamed field there cannot change the
// protocol.
//
// They follow the Node original's shapes: its keys in its order (it sorts
// them), a value it does not know left out rather than null (JSON.stringify
// drops undefined), null only where it sends null on purpose. Additions of
// ours come after the original's keys and are marked as extensions.
//
// Slices keep the difference between nil (sent as null) and empty (sent as
// []); the daemon fills every list the protocol documents as an array.

// Result is the set of final answers; EncodeResult takes any of them.
type Result interface {
	DeployResult | Status | RestartResult | LogsResult | EventsResult | ShutdownResult | CanaryResult |
		HostResult | TrafficResult
}

// timeLayout is JavaScript's Date.toISOString, which the original uses for
// every time: UTC, exactly three fractional digits.
const timeLayout = "2006-01-02T15:04:05.000Z"

// Time is a point in time as the protocol writes it:
// "2026-06-01T10:00:05.120Z". The zero Time means "not known"; a field of
// this type tagged omitzero is left out then. Reading accepts any RFC 3339
// time.
type Time struct{ time.Time }

// At wraps t (the zero time stays zero).
func At(t time.Time) Time { return Time{t} }

// MarshalJSON writes the time in the protocol's layout, in UTC.
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(t.UTC().Format(timeLayout))), nil
}

// UnmarshalJSON reads an RFC 3339 time; null reads as the zero Time.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("time: %w", err)
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("time: %w", err)
	}
	*t = Time{v}
	return nil
}

// Nullable is a value that is either left out, sent as null, or sent: the
// three states of the original's exitCode and exitSignal, which are left
// out until a process first exits (and again from each start on), and
// after an exit hold the code or signal, or null for the one that does not
// apply. The zero Nullable is left out by a field tagged omitzero.
type Nullable[T any] struct {
	Set   bool // false: left out
	Value *T   // when Set: nil is null
}

// IsZero reports whether n is left out.
func (n Nullable[T]) IsZero() bool { return !n.Set }

// MarshalJSON writes the value, or null.
func (n Nullable[T]) MarshalJSON() ([]byte, error) { return marshal(n.Value) }

// UnmarshalJSON reads a value or null; either way n is Set.
func (n *Nullable[T]) UnmarshalJSON(b []byte) error {
	n.Set, n.Value = true, nil
	return json.Unmarshal(b, &n.Value)
}

// DeployResult answers deploy and rollback.
type DeployResult struct {
	ActiveReleaseID   string  `json:"activeReleaseId"`
	PreviousReleaseID *string `json:"previousReleaseId"` // null when nothing was active
	// ConfigProblem (an addition, left out when empty) says why a rollback
	// could not use the config file and ran on the last good config.
	ConfigProblem string `json:"configProblem,omitempty"`
}

// HostResult answers drain-host and undrain-host (extensions): the
// host's state after the command.
type HostResult struct {
	// Drained is whether the host is drained now; Changed is false when
	// it already was (or was not).
	Drained bool `json:"drained"`
	Changed bool `json:"changed"`
	// Healthy is what the health path answers now: 200 (true) while a
	// release is active and the host is not drained.
	Healthy bool `json:"healthy"`
	// HealthPath is proxy.hostHealthPath.
	HealthPath string `json:"healthPath"`
	// QuietMs is, after a drain with wait, how long no request had
	// arrived when the answer was sent; left out otherwise.
	QuietMs int64 `json:"quietMs,omitempty"`
}

// RestartResult lists the instance ids that were restarted, in order.
type RestartResult struct {
	Restarted []string `json:"restarted"`
}

// LogsResult answers logs (an extension: the original's CLI builds the
// same list from status).
type LogsResult struct {
	Processes []ProcessLogs `json:"processes"`
}

// ProcessLogs is one process's retained output, in the shape of the
// original's `logs --json` entries.
type ProcessLogs struct {
	ID     string    `json:"id"`
	Logs   []LogLine `json:"logs"`
	Source string    `json:"source"` // "release <id> (<state>)", "service" or "singleton"
}

// LogLine is one captured line of a process's output.
type LogLine struct {
	At     Time   `json:"at"`
	Line   string `json:"line"`
	Stream string `json:"stream"` // "stdout" or "stderr"
}

// EventsResult answers events, oldest first.
type EventsResult struct {
	Events []Event `json:"events"`
}

// Event is one entry of the daemon's event history. Data's keys depend on
// the message (docs/cli.md lists the events); it is never null.
type Event struct {
	At      Time           `json:"at"`
	Data    map[string]any `json:"data"`
	Message string         `json:"message"`
}

// ShutdownResult answers shutdown, once every process stopped and the
// socket file is gone. Message is "shutdown".
type ShutdownResult struct {
	Message string `json:"message"`
}

// Status answers status and stop, in the Node original's shape. Daemon is
// an extension, left out when the daemon does not send it.
type Status struct {
	ActiveReleaseID *string     `json:"activeReleaseId"` // null when none is active
	Application     string      `json:"application"`
	Control         ControlInfo `json:"control"`
	Orphans         []Orphan    `json:"orphans"`
	Proxy           ProxyInfo   `json:"proxy"`
	Releases        []Release   `json:"releases"` // oldest first; a redeployed id keeps its place
	Services        []Unit      `json:"services"`
	Singletons      []Unit      `json:"singletons"`
	Daemon          *DaemonInfo `json:"daemon,omitempty"`
	// Canary (an extension) is the running canary; left out when none runs.
	Canary *CanaryInfo `json:"canary,omitempty"`
}

// ControlInfo echoes the control section of the config: Path always, the
// others as configured and left out when not. Mode is the numeric mode
// ("660" in the config is 432 here), as the original sends it.
type ControlInfo struct {
	Group *IDOrName `json:"group,omitempty"`
	Mode  *uint32   `json:"mode,omitempty"`
	Owner *IDOrName `json:"owner,omitempty"`
	Path  string    `json:"path"`
}

// IDOrName is control.owner or control.group as configured: a numeric id
// (sent as a number) or a name (sent as a string).
type IDOrName struct {
	ID   int    // when Name is ""
	Name string // a user or group name
}

// MarshalJSON writes the name as a string, or else the id as a number.
func (v IDOrName) MarshalJSON() ([]byte, error) {
	if v.Name != "" {
		return marshal(v.Name)
	}
	return marshal(v.ID)
}

// UnmarshalJSON reads a number or a string.
func (v *IDOrName) UnmarshalJSON(b []byte) error {
	*v = IDOrName{}
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &v.Name)
	}
	return json.Unmarshal(b, &v.ID)
}

// ProxyInfo describes the stable listener; Port is the bound port.
//
// Held and HoldGaveUp are extensions: the requests waiting for a release
// now (the hold, proxy.holdTimeoutMs), and those the hold answered 503
// since the daemon started.
type ProxyInfo struct {
	Host         string `json:"host"`
	Port         int    `json:"port"`
	UpstreamHost string `json:"upstreamHost"`
	Held         int    `json:"held"`
	HoldGaveUp   int64  `json:"holdGaveUp"`
	// Paused, PausedUntil and Maintenance are the traffic state (see
	// TrafficResult): a pause in force and until when (left out when not
	// paused), maintenance in force (null when off).
	Paused      bool             `json:"paused"`
	PausedUntil Time             `json:"pausedUntil,omitzero"`
	Maintenance *MaintenanceInfo `json:"maintenance"`
	// HostDrained and HostDrainedSince are the host's state for its load
	// balancer (drain-host, undrain-host; see HostResult): drained, and
	// since when (left out when not drained). A drain survives daemon
	// restarts with its time.
	HostDrained      bool `json:"hostDrained"`
	HostDrainedSince Time `json:"hostDrainedSince,omitzero"`
	// EventLoop is what the event-loop path did since the daemon
	// started; left out unless it runs (an extension).
	EventLoop *EventLoopInfo `json:"eventLoop,omitempty"`
}

// EventLoopInfo is the event loop's threads and counts its work: requests
// it answered itself, and connections it gave the net/http path.
type EventLoopInfo struct {
	Threads   int    `json:"threads"`
	Served    uint64 `json:"served"`
	HandedOff uint64 `json:"handedOff"`
}

// DaemonInfo is about rollbridged itself (an extension).
type DaemonInfo struct {
	Pid       int    `json:"pid"`
	Version   string `json:"version"`
	StartedAt Time   `json:"startedAt"`
	// CommandInProgress names the mutating command that runs; left out
	// when none does.
	CommandInProgress *string `json:"commandInProgress,omitempty"`
	// RestoreProblem says why the last active release was not restored at
	// start; left out when there was none.
	RestoreProblem *string `json:"restoreProblem,omitempty"`
}

// Orphan is a process of a previous daemon that still runs. ReleaseID is
// null for a service or singleton, which no release owns.
type Orphan struct {
	ID        string  `json:"id"`
	Pid       int     `json:"pid"`
	ReleaseID *string `json:"releaseId"`
}

// Release is one release. State is one of starting, canary (an
// extension), active, draining, stopped, failed. The times are left out until they happen; Revision is
// the release id when the deploy named none. CreatedAt, Requests and Error
// are extensions; Error is left out unless the release failed. Requests
// counts the requests (upgrades included) routed to the release since its
// current run started.
type Release struct {
	ActivatedAt     Time        `json:"activatedAt,omitzero"`
	ConnectionCount int64       `json:"connectionCount"`
	Connections     Connections `json:"connections"`
	DrainStartedAt  Time        `json:"drainStartedAt,omitzero"`
	Ports           Ports       `json:"ports"`
	Processes       []Process   `json:"processes"`
	ReleaseID       string      `json:"releaseId"`
	ReleasePath     string      `json:"releasePath"`
	Revision        string      `json:"revision"`
	State           string      `json:"state"`
	StoppedAt       Time        `json:"stoppedAt,omitzero"`
	CreatedAt       Time        `json:"createdAt,omitzero"`
	Requests        uint64      `json:"requests"`
	Error           string      `json:"error,omitempty"`
}

// Connections counts a release's open proxied connections.
type Connections struct {
	HTTP      int64 `json:"http"`
	WebSocket int64 `json:"websocket"`
}

// Ports are a release's allocated ports by process id, in config order. On
// the wire they are one JSON object whose keys keep that order.
type Ports []Port

// Port is one entry of Ports.
type Port struct {
	ID   string
	Port int
}

// Get returns the port of process id.
func (ps Ports) Get(id string) (int, bool) {
	for _, p := range ps {
		if p.ID == id {
			return p.Port, true
		}
	}
	return 0, false
}

// MarshalJSON writes {"id":port,...} in order; nil Ports are {}.
func (ps Ports) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshal(p.ID)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Port))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads an object of ports, keeping its key order.
func (ps *Ports) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("ports: want an object, got %s", b)
	}
	out := Ports{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("ports: %w", err)
		}
		var port int
		if err := dec.Decode(&port); err != nil {
			return fmt.Errorf("ports: %q: %w", tok, err)
		}
		out = append(out, Port{ID: tok.(string), Port: port}) // object keys are strings
	}
	*ps = out
	return nil
}

// Process is one managed process, with the original's rules for what is
// left out: ExitCode and ExitSignal (see Nullable), LastStartReason until
// the first spawn, Pid unless the leader runs, RSSBytes unless memory is
// supervised and sampled, StartedAt before the first spawn, UptimeMs
// unless running, LastMemoryRestartAt before the first memory restart.
// State is one of starting, running, stopping, stopped, failed (failed
// also after an exit nobody asked for, with code 0 too); LastStartReason
// one of deploy, crash, manual, memory. Logs holds only the newest lines
// (the daemon caps them per process and per answer); LogsOmitted, an
// extension left out when 0, counts the older retained lines it left out,
// which the logs command returns. Policy, Port, CgroupMemoryBytes and Unit
// are extensions too.
type Process struct {
	Children            []Member         `json:"children"`
	Command             string           `json:"command"`
	Cwd                 string           `json:"cwd"`
	ExitCode            Nullable[int]    `json:"exitCode,omitzero"`
	ExitSignal          Nullable[string] `json:"exitSignal,omitzero"`
	ID                  string           `json:"id"`
	LastMemoryRestartAt Time             `json:"lastMemoryRestartAt,omitzero"`
	LastStartReason     string           `json:"lastStartReason,omitempty"`
	Logs                []LogLine        `json:"logs"`
	LogsOmitted         int              `json:"logsOmitted,omitempty"`
	MemoryRestarts      int              `json:"memoryRestarts"`
	Pid                 int              `json:"pid,omitempty"`
	Restarts            int              `json:"restarts"`
	RSSBytes            uint64           `json:"rssBytes,omitempty"`
	StartedAt           Time             `json:"startedAt,omitzero"`
	State               string           `json:"state"`
	UptimeMs            *int64           `json:"uptimeMs,omitempty"` // 0 is a value: just started
	Policy              string           `json:"policy"`
	Port                int              `json:"port,omitempty"`
	// CgroupMemoryBytes (extension, systemd runtime) is the memory the
	// process's unit's cgroup accounts for, sampled with RSSBytes.
	CgroupMemoryBytes uint64 `json:"cgroupMemoryBytes,omitempty"`
	// Unit (extension, systemd runtime) is the transient unit the process
	// runs as, for systemctl and journalctl -u.
	Unit string `json:"unit,omitempty"`
}

// Member is one live process of a managed process group, as memory
// supervision last sampled it.
type Member struct {
	Command  string `json:"command"`
	Pid      int    `json:"pid"`
	RSSBytes uint64 `json:"rssBytes,omitempty"`
}

// Unit is a service or singleton entry of the status. ReleaseID (the
// release whose definition it runs) is an extension.
type Unit struct {
	ID        string  `json:"id"`
	Process   Process `json:"process"`
	ReleaseID string  `json:"releaseId"`
}
