package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxLineBytes bounds one request line; longer input is refused.
const MaxLineBytes = 1 << 20

// Command names.
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

// Request is one client request. Only the fields of its command may be set.
type Request struct {
	Command     string `json:"command"`
	ReleasePath string `json:"releasePath,omitempty"`
	ReleaseID   string `json:"releaseId,omitempty"`
	Revision    string `json:"revision,omitempty"`
	Process     string `json:"process,omitempty"`
	Policy      string `json:"policy,omitempty"`
	Limit       int    `json:"limit,omitempty"`
}

// Progress is an intermediate line of a long command (deploy, rollback).
type Progress struct {
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

// Error codes carried on the wire.
const (
	CodeBadRequest       = "bad_request"
	CodeUnknownCommand   = "unknown_command"
	CodeNotFound         = "not_found"
	CodeDeployInProgress = "deploy_in_progress"
	CodeConflict         = "conflict"
	CodeShuttingDown     = "shutting_down"
	CodeFailed           = "failed"
)

// Error is an error that crosses the socket with a code.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Is lets errors.Is(err, ErrNotFound) match any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is; their Message is empty on purpose (see Is).
var (
	ErrBadRequest       = &Error{Code: CodeBadRequest}
	ErrUnknownCommand   = &Error{Code: CodeUnknownCommand}
	ErrNotFound         = &Error{Code: CodeNotFound}
	ErrDeployInProgress = &Error{Code: CodeDeployInProgress}
	ErrConflict         = &Error{Code: CodeConflict}
	ErrShuttingDown     = &Error{Code: CodeShuttingDown}
)

// Errorf builds an *Error with a code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

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
		if errors.As(err, &ute) || (len(line) > 0 && line[0] != '{') {
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
		if !contains(allowed, k) {
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// line is what a server writes: a status plus either an error, a progress
// message, or the command's result fields spliced in.
func encodeSuccess(result any) ([]byte, error) {
	if result == nil {
		return []byte(`{"status":"success"}` + "\n"), nil
	}
	body, err := json.Marshal(result)
	if err != nil {
		return nil, err
	}
	body = bytes.TrimSpace(body)
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("result of type %T is not a JSON object", result)
	}
	var b bytes.Buffer
	b.WriteString(`{"status":"success"`)
	if inner := bytes.TrimSpace(body[1 : len(body)-1]); len(inner) > 0 {
		b.WriteByte(',')
		b.Write(inner)
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

type errorLine struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Code   string `json:"code"`
}

type progressLine struct {
	Status  string         `json:"status"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

func encodeError(err error) []byte {
	e := asError(err)
	b, _ := json.Marshal(errorLine{Status: "error", Error: e.Message, Code: e.Code}) // strings only: cannot fail
	return append(b, '\n')
}

func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e
	}
	if e != nil {
		return &Error{Code: e.Code, Message: err.Error()}
	}
	return &Error{Code: CodeFailed, Message: err.Error()}
}

// readLine reads one line of at most MaxLineBytes, without the newline.
// It returns errLineTooLong (after discarding the rest of the line) when the
// limit is exceeded, and io.EOF at a clean end of input.
func readLine(r interface {
	ReadSlice(delim byte) ([]byte, error)
}) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLineBytes+1 {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			return nil, errLineTooLong
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return bytes.TrimRight(buf, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return buf, nil
		default:
			return nil, err
		}
	}
}

var errLineTooLong = Errorf(CodeBadRequest, "request line longer than %d bytes", MaxLineBytes)

func encodeJSONLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
