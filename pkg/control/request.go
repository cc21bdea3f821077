package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
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
)

// commandFields lists, per command, the request fields it accepts.
var commandFields = map[string][]string{
	CmdDeploy:   {"releasePath", "releaseId", "revision"},
	CmdRollback: {"releaseId"},
	CmdStatus:   {},
	CmdStop:     {"releaseId"},
	CmdRestart:  {"process", "policy"},
	CmdLogs:     {"process"},
	CmdEvents:   {"limit"},
	CmdShutdown: {},
}

// Commands returns the command names the protocol knows.
func Commands() []string {
	return []string{CmdDeploy, CmdRollback, CmdStatus, CmdStop, CmdRestart, CmdLogs, CmdEvents, CmdShutdown}
}

// Request is one request line as it crosses the socket: the command and
// the fields of that command, all in one flat JSON object. Callers build
// it from the typed per-command requests below; only the fields of its
// command may be set.
type Request struct {
	Command     string `json:"command"`
	ReleasePath string `json:"releasePath,omitempty"`
	ReleaseID   string `json:"releaseId,omitempty"`
	Revision    string `json:"revision,omitempty"`
	Process     string `json:"process,omitempty"`
	Policy      string `json:"policy,omitempty"`
	Limit       int    `json:"limit,omitempty"`
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

// RestartRequest restarts non-proxied processes in place: every one, the
// ones matching Process (base or instance id), or those with Policy. At
// most one of Process and Policy may be set.
type RestartRequest struct {
	Process string
	Policy  string
}

// LogsRequest asks for retained output: of every process, or of the ones
// matching Process (base or instance id).
type LogsRequest struct {
	Process string
}

// EventsRequest asks for the newest Limit events; 0 means all retained.
type EventsRequest struct {
	Limit int
}

func (r DeployRequest) wire() *Request {
	return &Request{Command: CmdDeploy, ReleasePath: r.ReleasePath, ReleaseID: r.ReleaseID, Revision: r.Revision}
}

func (r RollbackRequest) wire() *Request {
	return &Request{Command: CmdRollback, ReleaseID: r.ReleaseID}
}

func (r StopRequest) wire() *Request { return &Request{Command: CmdStop, ReleaseID: r.ReleaseID} }

func (r RestartRequest) wire() *Request {
	return &Request{Command: CmdRestart, Process: r.Process, Policy: r.Policy}
}

func (r LogsRequest) wire() *Request   { return &Request{Command: CmdLogs, Process: r.Process} }
func (r EventsRequest) wire() *Request { return &Request{Command: CmdEvents, Limit: r.Limit} }

// DecodeRequest parses one request line strictly: it must be a JSON object
// naming a known command, with only that command's fields, each of the right
// type, and the required ones present. The error is always an *Error.
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
	if !ok {
		return nil, Errorf(CodeBadRequest, "request has no \"command\" field")
	}
	var req Request
	if err := json.Unmarshal(cmdRaw, &req.Command); err != nil {
		return nil, Errorf(CodeBadRequest, "field \"command\" must be a string")
	}
	allowed, known := commandFields[req.Command]
	if !known {
		return nil, Errorf(CodeUnknownCommand, "unknown command %q; known commands: %s", req.Command, strings.Join(Commands(), ", "))
	}
	for k, v := range raw {
		if k == "command" {
			continue
		}
		if !slices.Contains(allowed, k) {
			return nil, Errorf(CodeBadRequest, "command %s does not take field %q", req.Command, k)
		}
		if err := decodeField(&req, k, v); err != nil {
			return nil, err
		}
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return &req, nil
}

func decodeField(req *Request, k string, v json.RawMessage) error {
	var dst any
	switch k {
	case "releasePath":
		dst = &req.ReleasePath
	case "releaseId":
		dst = &req.ReleaseID
	case "revision":
		dst = &req.Revision
	case "process":
		dst = &req.Process
	case "policy":
		dst = &req.Policy
	case "limit":
		if err := json.Unmarshal(v, &req.Limit); err != nil {
			return Errorf(CodeBadRequest, "field \"limit\" must be a non-negative integer")
		}
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return Errorf(CodeBadRequest, "field %q must be a string", k)
	}
	return nil
}

// Validate checks the per-command rules that do not need the daemon's state.
func (r *Request) Validate() error {
	switch r.Command {
	case CmdDeploy:
		if r.ReleasePath == "" {
			return Errorf(CodeBadRequest, "deploy needs \"releasePath\": the prepared release directory")
		}
	case CmdRestart:
		if r.Process != "" && r.Policy != "" {
			return Errorf(CodeBadRequest, "restart takes \"process\" or \"policy\", not both")
		}
	case CmdEvents:
		if r.Limit < 0 {
			return Errorf(CodeBadRequest, "field \"limit\" must be a non-negative integer")
		}
	}
	return nil
}
