package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"time"
)

// MaxLineBytes bounds one request line; longer input is refused.
const MaxLineBytes = 1 << 20

// Command names, as sent in a request's "command" field.
const (
	CmdDeploy   = "deploy"
	CmdRollback = "rollback"
	CmdStatus   = "status"
	CmdStop     = "stop"
	CmdRestart  = "restart"
	CmdLogs     = "logs"
	CmdEvents   = "events"
	CmdShutdown = "shutdown"
	// CmdDrainHost and CmdUndrainHost (extensions) turn the host health
	// answer (proxy.hostHealthPath) to 503 and back.
	CmdDrainHost   = "drainHost"
	CmdUndrainHost = "undrainHost"
)

// commandFields lists, per command, the request fields it reads. Any other
// field is ignored, as the original ignores it: a newer client's additions
// must not break an older daemon.
var commandFields = map[string][]string{
	CmdDeploy:   {"releasePath", "releaseId", "revision", "progress"},
	CmdRollback: {"releaseId", "progress"},
	CmdStatus:   {},
	CmdStop:     {"releaseId"},
	CmdRestart:  {"processId", "process", "policy"},
	CmdLogs:     {"processId", "process"},
	CmdEvents:   {"limit"},
	CmdShutdown: {},

	CmdDeployCanary:   {"releasePath", "releaseId", "revision", "percent", "progress"},
	CmdRolloutSet:     {"percent"},
	CmdRolloutPromote: {"progress"},
	CmdRolloutAbort:   {},

	CmdDrainHost:   {"wait", "quietMs", "timeoutMs", "progress"},
	CmdUndrainHost: {},
	// traffic.go
	CmdPause:       {"timeoutMs", "drain"},
	CmdResume:      {},
	CmdMaintenance: {"state", "message", "page"},
}

// Commands returns the command names the protocol knows.
func Commands() []string {
	return []string{CmdDeploy, CmdRollback, CmdStatus, CmdStop, CmdRestart, CmdLogs, CmdEvents, CmdShutdown,
		CmdDeployCanary, CmdRolloutSet, CmdRolloutPromote, CmdRolloutAbort, CmdDrainHost, CmdUndrainHost,
		CmdPause, CmdResume, CmdMaintenance}
}

// Request is one request line as it crosses the socket: the command and
// the fields of that command, all in one flat JSON object, with the
// original's field names. Callers build it from the typed per-command
// requests below.
type Request struct {
	Command     string `json:"command"`
	ReleasePath string `json:"releasePath,omitempty"`
	ReleaseID   string `json:"releaseId,omitempty"`
	Revision    string `json:"revision,omitempty"`
	// ProcessID is "processId" on the wire, the original's name; "process"
	// (our name before) is read as an alias.
	ProcessID string `json:"processId,omitempty"`
	Policy    string `json:"policy,omitempty"`
	Limit     int    `json:"limit,omitempty"`
	// Wait and QuietMs are drainHost's: wait until no request came for
	// QuietMs, at most TimeoutMs (0: the defaults).
	Wait    bool  `json:"wait,omitempty"`
	QuietMs int64 `json:"quietMs,omitempty"`
	// Progress asks a deploy or rollback for progress lines before its
	// answer. Without it every request gets exactly one line back, as from
	// the original, whose clients take the first line as the answer.
	Progress bool `json:"progress,omitempty"`
	// Percent is a canary's share of new clients (deployCanary, rolloutSet).
	Percent Percent `json:"percent,omitzero"`
	// TimeoutMs bounds drainHost's wait and pause's hold. The traffic
	// commands' fields (traffic.go): pause's timeoutMs and drain;
	// maintenance's state ("on", "off"), message and page.
	TimeoutMs int64  `json:"timeoutMs,omitempty"`
	Drain     bool   `json:"drain,omitempty"`
	State     string `json:"state,omitempty"`
	Message   string `json:"message,omitempty"`
	Page      string `json:"page,omitempty"`
}

// DeployRequest starts a prepared release and switches traffic to it.
type DeployRequest struct {
	ReleasePath string // required: the prepared release directory
	ReleaseID   string // default: Revision, else a UTC timestamp
	Revision    string
}

// RollbackRequest redeploys a retained release; an empty ReleaseID means
// the release that was active before the current one.
type RollbackRequest struct {
	ReleaseID string
}

// StopRequest stops a release; an empty ReleaseID means the active one.
type StopRequest struct {
	ReleaseID string
}

// RestartRequest restarts non-proxied processes in place: every one, or
// those matching both ProcessID (base or instance id) and Policy, each when
// set.
type RestartRequest struct {
	ProcessID string
	Policy    string
}

// LogsRequest asks for retained output: of every process, or of the ones
// matching ProcessID (base or instance id).
type LogsRequest struct {
	ProcessID string
}

// EventsRequest asks for the newest Limit events; 0 means all retained.
type EventsRequest struct {
	Limit int
}

// Defaults of DrainHostRequest's wait.
const (
	DefaultDrainQuiet   = 2 * time.Second
	DefaultDrainTimeout = 60 * time.Second
)

// DrainHostRequest drains the host: its health answer turns 503, so the
// load balancer sends no new requests, while those that still come are
// served. With Wait the answer comes once no request arrived for Quiet
// (0: DefaultDrainQuiet), or with an error after Timeout (0:
// DefaultDrainTimeout), the host staying drained either way.
type DrainHostRequest struct {
	Wait    bool
	Quiet   time.Duration
	Timeout time.Duration
}

func (r DrainHostRequest) wire() *Request {
	return &Request{Command: CmdDrainHost, Wait: r.Wait, QuietMs: r.Quiet.Milliseconds(), TimeoutMs: r.Timeout.Milliseconds()}
}

func (r DeployRequest) wire() *Request {
	return &Request{Command: CmdDeploy, ReleasePath: r.ReleasePath, ReleaseID: r.ReleaseID, Revision: r.Revision}
}

func (r RollbackRequest) wire() *Request {
	return &Request{Command: CmdRollback, ReleaseID: r.ReleaseID}
}

func (r StopRequest) wire() *Request { return &Request{Command: CmdStop, ReleaseID: r.ReleaseID} }

func (r RestartRequest) wire() *Request {
	return &Request{Command: CmdRestart, ProcessID: r.ProcessID, Policy: r.Policy}
}

func (r LogsRequest) wire() *Request   { return &Request{Command: CmdLogs, ProcessID: r.ProcessID} }
func (r EventsRequest) wire() *Request { return &Request{Command: CmdEvents, Limit: r.Limit} }

// DecodeRequest parses one request line: a JSON object naming a known
// command. The fields that command reads must have the right type (null
// counts as absent), the required ones must be there, and every other
// field is ignored. The error is always an *Error.
func DecodeRequest(line []byte) (*Request, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, Errorf(CodeBadRequest, "empty request: send one JSON object per line, e.g. {\"command\":\"status\"}")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) || line[0] != '{' {
			return nil, Errorf(CodeBadRequest, "request must be a JSON object, e.g. {\"command\":\"status\"}")
		}
		return nil, Errorf(CodeBadRequest, "malformed JSON request: %v", err)
	}
	if raw == nil {
		return nil, Errorf(CodeBadRequest, "request must be a JSON object, e.g. {\"command\":\"status\"}")
	}
	cmdRaw, ok := raw["command"]
	if !ok || isNull(cmdRaw) {
		return nil, Errorf(CodeBadRequest, "request has no \"command\" field")
	}
	var req Request
	if err := json.Unmarshal(cmdRaw, &req.Command); err != nil {
		return nil, Errorf(CodeBadRequest, "field \"command\" must be a string")
	}
	fields, known := commandFields[req.Command]
	if !known {
		return nil, Errorf(CodeUnknownCommand, "unknown command %q; known commands: %s", req.Command, strings.Join(Commands(), ", "))
	}
	for _, k := range fields {
		if v, ok := raw[k]; ok && !isNull(v) {
			if err := decodeField(&req, k, v); err != nil {
				return nil, err
			}
		}
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return &req, nil
}

func isNull(v json.RawMessage) bool { return string(v) == "null" }

func decodeField(req *Request, k string, v json.RawMessage) error {
	if ok, err := decodeTrafficField(req, k, v); ok {
		return err
	}
	var dst *string
	switch k {
	case "releasePath":
		dst = &req.ReleasePath
	case "releaseId":
		dst = &req.ReleaseID
	case "revision":
		dst = &req.Revision
	case "processId":
		dst = &req.ProcessID
	case "process":
		// Our name before the original's; processId wins when both are set.
		if req.ProcessID != "" {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return Errorf(CodeBadRequest, "field %q must be a string", k)
			}
			return nil
		}
		dst = &req.ProcessID
	case "policy":
		dst = &req.Policy
	case "limit":
		return decodeLimit(req, v)
	case "percent":
		return json.Unmarshal(v, &req.Percent) // its errors are *Error
	case "wait":
		if err := json.Unmarshal(v, &req.Wait); err != nil {
			return Errorf(CodeBadRequest, "field \"wait\" must be true or false")
		}
		return nil
	case "quietMs":
		return decodeMs(&req.QuietMs, k, v)
	case "progress":
		if err := json.Unmarshal(v, &req.Progress); err != nil {
			return Errorf(CodeBadRequest, "field \"progress\" must be true or false")
		}
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return Errorf(CodeBadRequest, "field %q must be a string", k)
	}
	return nil
}

// decodeMs reads a duration in milliseconds: a whole number from 0 to a
// day.
func decodeMs(dst *int64, k string, v json.RawMessage) error {
	var n int64
	if err := json.Unmarshal(v, &n); err != nil || n < 0 || n > int64(24*time.Hour/time.Millisecond) {
		return Errorf(CodeBadRequest, "field %q must be a whole number of milliseconds from 0 to 86400000", k)
	}
	*dst = n
	return nil
}

// decodeLimit reads events' limit as the original does: a number, where
// one that is not positive, or not below the number of events, means all,
// and a fraction counts as the next whole number (the original slices
// from length-limit, so 2.5 returns 3 events). The original reads limit
// only when it is a JSON number and ignores anything else, so a string, a
// boolean or an object also means all, and so does a number too large for
// a float64 (the original's Infinity).
func decodeLimit(req *Request, v json.RawMessage) error {
	var f float64
	switch err := json.Unmarshal(v, &f); {
	case err != nil, f <= 0, f >= math.MaxInt32:
		req.Limit = 0 // all: no ring holds more
	default:
		req.Limit = int(math.Ceil(f))
	}
	return nil
}

// Validate checks the per-command rules that do not need the daemon's state.
func (r *Request) Validate() error {
	if (r.Command == CmdDeploy || r.Command == CmdDeployCanary) && r.ReleasePath == "" {
		return Errorf(CodeBadRequest, "%s needs \"releasePath\": the prepared release directory", r.Command)
	}
	if (r.Command == CmdDeployCanary || r.Command == CmdRolloutSet) && !r.Percent.Set {
		return Errorf(CodeBadRequest, "%s needs \"percent\": the canary's share of new clients, 0 to 100", r.Command)
	}
	return r.validateTraffic()
}
