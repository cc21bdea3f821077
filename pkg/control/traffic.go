package control

import (
	"context"
	"encoding/json"
	"math"
)

// Traffic-control commands (extensions): pause and resume new requests,
// turn maintenance on and off. Each answers with the traffic state after
// it (TrafficResult).
const (
	CmdPause       = "pause"
	CmdResume      = "resume"
	CmdMaintenance = "maintenance"
)

// MaxPageBytes bounds a maintenance page sent with the maintenance
// command. The client reads the file and sends its content: the daemon
// never opens a path that a member of the socket's group names.
const MaxPageBytes = 256 << 10

// maxTimeoutMs bounds timeoutMs on the wire (ten years, as the config's
// millisecond fields); the daemon applies its own, smaller maximum.
const maxTimeoutMs = 10 * 365 * 24 * 3600 * 1000

// Maintenance states, the "state" field of a maintenance request.
const (
	MaintenanceOn  = "on"
	MaintenanceOff = "off"
)

// TrafficHandler answers the traffic-control commands; Handler embeds it.
type TrafficHandler interface {
	// Pause holds new requests until resume or the pause's timeout; with
	// Drain it answers once the requests in flight have finished.
	Pause(ctx context.Context, req PauseRequest) (TrafficResult, error)
	Resume(ctx context.Context) (TrafficResult, error)
	Maintenance(ctx context.Context, req MaintenanceRequest) (TrafficResult, error)
}

// PauseRequest holds every new request, at most TimeoutMs (0: the
// daemon's proxy.pauseTimeoutMs); Drain waits for the HTTP requests in
// flight to finish before answering.
type PauseRequest struct {
	TimeoutMs int64
	Drain     bool
}

// MaintenanceRequest turns maintenance on (On) or off. Message and Page
// (HTML, at most MaxPageBytes) are read only when turning it on; empty
// means the default text and page.
type MaintenanceRequest struct {
	On      bool
	Message string
	Page    string
}

func (r PauseRequest) wire() *Request {
	return &Request{Command: CmdPause, TimeoutMs: r.TimeoutMs, Drain: r.Drain}
}

func (r MaintenanceRequest) wire() *Request {
	state := MaintenanceOff
	if r.On {
		state = MaintenanceOn
	}
	return &Request{Command: CmdMaintenance, State: state, Message: r.Message, Page: r.Page}
}

// TrafficResult answers pause, resume and maintenance: the traffic state
// after the command, as status shows it under "proxy".
type TrafficResult struct {
	Paused bool `json:"paused"`
	// PausedUntil is when the pause releases its requests by itself; left
	// out when not paused.
	PausedUntil Time `json:"pausedUntil,omitzero"`
	Held        int  `json:"held"`
	// Drained is set by a pause with drain: the requests that were in
	// flight when it began have finished.
	Drained     bool             `json:"drained,omitempty"`
	Maintenance *MaintenanceInfo `json:"maintenance"` // null when off
}

// MaintenanceInfo describes maintenance in force.
type MaintenanceInfo struct {
	Since   Time   `json:"since"`
	Message string `json:"message"`
	// Page says the answer is the operator's own page, not the default.
	Page bool `json:"page"`
}

// Pause holds new requests; see PauseRequest.
func (c *Client) Pause(ctx context.Context, req PauseRequest) (TrafficResult, error) {
	return call[TrafficResult](ctx, c, req.wire(), nil)
}

// Resume ends a pause: the held requests are released.
func (c *Client) Resume(ctx context.Context) (TrafficResult, error) {
	return call[TrafficResult](ctx, c, &Request{Command: CmdResume}, nil)
}

// Maintenance turns maintenance on or off; see MaintenanceRequest.
func (c *Client) Maintenance(ctx context.Context, req MaintenanceRequest) (TrafficResult, error) {
	return call[TrafficResult](ctx, c, req.wire(), nil)
}

// dispatchTraffic runs a traffic-control request; ok is false for any
// other command.
func dispatchTraffic(ctx context.Context, h TrafficHandler, req *Request) (line []byte, ok bool, err error) {
	switch req.Command {
	case CmdPause:
		line, err = reply(h.Pause(ctx, PauseRequest{TimeoutMs: req.TimeoutMs, Drain: req.Drain}))
	case CmdResume:
		line, err = reply(h.Resume(ctx))
	case CmdMaintenance:
		line, err = reply(h.Maintenance(ctx, MaintenanceRequest{On: req.State == MaintenanceOn, Message: req.Message, Page: req.Page}))
	default:
		return nil, false, nil
	}
	return line, true, err
}

// decodeTrafficField reads the traffic commands' fields; ok is false for
// a field that is not one of them.
func decodeTrafficField(req *Request, k string, v json.RawMessage) (ok bool, err error) {
	switch k {
	case "timeoutMs":
		var f float64
		if json.Unmarshal(v, &f) != nil || f < 0 || f != math.Trunc(f) || f > maxTimeoutMs {
			return true, Errorf(CodeBadRequest, "field \"timeoutMs\" must be a whole number of milliseconds, 0 or more")
		}
		req.TimeoutMs = int64(f)
	case "drain":
		if json.Unmarshal(v, &req.Drain) != nil {
			return true, Errorf(CodeBadRequest, "field \"drain\" must be true or false")
		}
	case "state":
		if json.Unmarshal(v, &req.State) != nil || (req.State != MaintenanceOn && req.State != MaintenanceOff) {
			return true, Errorf(CodeBadRequest, "field \"state\" must be \"on\" or \"off\"")
		}
	case "message":
		if json.Unmarshal(v, &req.Message) != nil {
			return true, Errorf(CodeBadRequest, "field \"message\" must be a string")
		}
	case "page":
		if json.Unmarshal(v, &req.Page) != nil {
			return true, Errorf(CodeBadRequest, "field \"page\" must be a string")
		}
	default:
		return false, nil
	}
	return true, nil
}

// validateTraffic checks the traffic commands' rules.
func (r *Request) validateTraffic() error {
	if r.Command != CmdMaintenance {
		return nil
	}
	if r.State == "" {
		return Errorf(CodeBadRequest, "maintenance needs \"state\": \"on\" or \"off\"")
	}
	if len(r.Page) > MaxPageBytes {
		return Errorf(CodeBadRequest, "maintenance page is %d bytes, more than the %d allowed", len(r.Page), MaxPageBytes)
	}
	if len(r.Message) > maxMessageBytes {
		return Errorf(CodeBadRequest, "maintenance message is %d bytes, more than the %d allowed", len(r.Message), maxMessageBytes)
	}
	return nil
}

// maxMessageBytes bounds a maintenance message: a sentence or two, shown
// in a page and a JSON answer.
const maxMessageBytes = 4096
