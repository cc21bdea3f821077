package daemon

import (
	"context"
	"errors"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"github.com/rollbridge/rollbridge-go/pkg/supervisor"
)

// handler adapts the supervisor to control.Handler. It is the one place
// where domain values become wire values and domain errors become wire
// codes: nothing else in the daemon builds a control type, so a renamed
// field in pkg/supervisor or pkg/process cannot change the protocol.
//
// It is also where failed commands are recorded, by this rule: every
// failure becomes exactly one event, written by the layer that knows it
// best.
//   - A deploy or rollback whose flow ran and failed is recorded by the
//     supervisor as "deploy failed" (with the output and which release
//     stays active); the handler adds nothing.
//   - Every other error a command returns — a refusal (not found, busy,
//     conflict, shutting down) or a failure the supervisor did not record —
//     is recorded here as "command failed".
//   - Input that never reaches the handler (malformed, unknown command,
//     over-long line) is recorded by the control server's failed hook,
//     also as "command failed" (see commandFailed).
//
// The supervisor marks the failures it recorded with supervisor.ErrRecorded.
type handler struct {
	sup      *supervisor.Supervisor
	log      *events.Log
	status   func() supervisor.Status
	shutdown func(ctx context.Context) error
}

// codes maps the supervisor's refusals to wire codes; anything else is
// CodeFailed.
var codes = []struct {
	kind error
	code string
}{
	{supervisor.ErrNotFound, control.CodeNotFound},
	{supervisor.ErrConflict, control.CodeConflict},
	{supervisor.ErrInvalid, control.CodeBadRequest},
	{supervisor.ErrBusy, control.CodeDeployInProgress},
	{supervisor.ErrShuttingDown, control.CodeShuttingDown},
}

// wireError is err with its wire code.
func wireError(err error) *control.Error {
	code := control.CodeFailed
	for _, c := range codes {
		if errors.Is(err, c.kind) {
			code = c.code
			break
		}
	}
	return &control.Error{Code: code, Message: err.Error()}
}

// fail returns err as a wire error and records it, unless the supervisor
// already did (see handler).
func (h *handler) fail(command string, err error) *control.Error {
	e := wireError(err)
	if !errors.Is(err, supervisor.ErrRecorded) {
		commandFailed(h.log, command, e)
	}
	return e
}

// commandFailed records a "command failed" event; command is "" when the
// request did not decode. The control server's failed hook calls it too.
func commandFailed(log events.Sink, command string, e *control.Error) {
	data := map[string]any{events.KeyError: e.Message, "code": e.Code}
	if command != "" {
		data["command"] = command
	}
	log.Emit(events.CommandFailed, data)
}

func progressFunc(progress func(control.Progress)) supervisor.Progress {
	return func(msg string, data map[string]any) { progress(control.Progress{Message: msg, Data: data}) }
}

// Deploy runs the supervisor's deploy.
func (h *handler) Deploy(ctx context.Context, req control.DeployRequest, progress func(control.Progress)) (control.DeployResult, error) {
	res, err := h.sup.Deploy(ctx, supervisor.DeployRequest{ReleasePath: req.ReleasePath, ReleaseID: req.ReleaseID, Revision: req.Revision}, progressFunc(progress))
	if err != nil {
		return control.DeployResult{}, h.fail(control.CmdDeploy, err)
	}
	return deployResult(res), nil
}

// Rollback runs the supervisor's rollback.
func (h *handler) Rollback(ctx context.Context, req control.RollbackRequest, progress func(control.Progress)) (control.DeployResult, error) {
	res, err := h.sup.Rollback(ctx, req.ReleaseID, progressFunc(progress))
	if err != nil {
		return control.DeployResult{}, h.fail(control.CmdRollback, err)
	}
	return deployResult(res), nil
}

// Status answers from the daemon's status.
func (h *handler) Status(context.Context) (control.Status, error) {
	return statusResult(h.status()), nil
}

// Stop stops a release and answers with the status after the stop.
func (h *handler) Stop(ctx context.Context, req control.StopRequest) (control.Status, error) {
	if err := h.sup.Stop(ctx, req.ReleaseID); err != nil {
		return control.Status{}, h.fail(control.CmdStop, err)
	}
	return statusResult(h.status()), nil
}

// Restart restarts processes in place.
func (h *handler) Restart(ctx context.Context, req control.RestartRequest) (control.RestartResult, error) {
	res, err := h.sup.Restart(ctx, req.Process, req.Policy)
	if err != nil {
		return control.RestartResult{}, h.fail(control.CmdRestart, err)
	}
	return control.RestartResult{Restarted: res.Restarted}, nil
}

// Logs answers with the retained output.
func (h *handler) Logs(_ context.Context, req control.LogsRequest) (control.LogsResult, error) {
	logs, err := h.sup.Logs(req.Process)
	if err != nil {
		return control.LogsResult{}, h.fail(control.CmdLogs, err)
	}
	return control.LogsResult{Processes: mapSlice(logs, func(l supervisor.ProcessLogs) control.ProcessLogs {
		return control.ProcessLogs{ID: l.ID, Source: l.Source, Logs: logLines(l.Logs)}
	})}, nil
}

// Events answers with the event history.
func (h *handler) Events(_ context.Context, req control.EventsRequest) (control.EventsResult, error) {
	return control.EventsResult{Events: mapSlice(h.sup.Events(req.Limit), func(e events.Event) control.Event {
		return control.Event{At: e.At, Message: string(e.Message), Data: e.Data}
	})}, nil
}

// Shutdown stops the daemon and answers once it has.
func (h *handler) Shutdown(ctx context.Context) (control.ShutdownResult, error) {
	if err := h.shutdown(ctx); err != nil {
		return control.ShutdownResult{}, h.fail(control.CmdShutdown, err)
	}
	return control.ShutdownResult{Message: "shutdown"}, nil
}

// The mappings below copy domain values field by field. Slices keep nil as
// nil: the wire tells null from [] (see control's response.go), and the
// domain already decides which lists are always present.

func mapSlice[A, B any](in []A, f func(A) B) []B {
	if in == nil {
		return nil
	}
	out := make([]B, len(in))
	for i, a := range in {
		out[i] = f(a)
	}
	return out
}

func deployResult(r *supervisor.DeployResult) control.DeployResult {
	return control.DeployResult{ActiveReleaseID: r.ActiveReleaseID, PreviousReleaseID: r.PreviousReleaseID}
}

func statusResult(s supervisor.Status) control.Status {
	return control.Status{
		ActiveReleaseID: s.ActiveReleaseID,
		Application:     s.Application,
		Control:         control.ControlInfo{Path: s.Control.Path},
		Orphans: mapSlice(s.Orphans, func(o state.Orphan) control.Orphan {
			return control.Orphan{ID: o.ID, Pid: o.Pid, ReleaseID: o.ReleaseID}
		}),
		Proxy:      control.ProxyInfo{Host: s.Proxy.Host, Port: s.Proxy.Port, UpstreamHost: s.Proxy.UpstreamHost},
		Releases:   mapSlice(s.Releases, releaseEntry),
		Services:   mapSlice(s.Services, unitEntry),
		Singletons: mapSlice(s.Singletons, unitEntry),
		Daemon: control.DaemonInfo{Pid: s.Daemon.Pid, Version: s.Daemon.Version, StartedAt: s.Daemon.StartedAt,
			CommandInProgress: s.Daemon.CommandInProgress, RestoreProblem: s.Daemon.RestoreProblem},
	}
}

func releaseEntry(r supervisor.ReleaseStatus) control.Release {
	return control.Release{
		ReleaseID: r.ReleaseID, ReleasePath: r.ReleasePath, Revision: r.Revision, State: string(r.State),
		Ports: r.Ports, Connections: control.Connections{HTTP: r.Connections.HTTP, WebSocket: r.Connections.WebSocket},
		ConnectionCount: r.ConnectionCount, CreatedAt: r.CreatedAt, ActivatedAt: r.ActivatedAt,
		DrainStartedAt: r.DrainStartedAt, StoppedAt: r.StoppedAt, Error: r.Error,
		Processes: mapSlice(r.Processes, processEntry),
	}
}

func unitEntry(u supervisor.UnitStatus) control.Unit {
	return control.Unit{ID: u.ID, ReleaseID: u.ReleaseID, Process: processEntry(u.Process)}
}

func processEntry(p supervisor.ProcessStatus) control.Process {
	var reason *string
	if p.LastStartReason != nil {
		r := string(*p.LastStartReason)
		reason = &r
	}
	return control.Process{
		ID: p.ID, Command: p.Command, Cwd: p.Cwd, State: string(p.State), Pid: p.Pid, Restarts: p.Restarts,
		StartedAt: p.StartedAt, UptimeMs: p.UptimeMs, ExitCode: p.ExitCode, ExitSignal: p.ExitSignal,
		LastStartReason: reason, Logs: logLines(p.Logs), RSSBytes: p.RSSBytes, MemoryRestarts: p.MemoryRestarts,
		LastMemoryRestartAt: p.LastMemoryRestartAt,
		Children: mapSlice(p.Children, func(m process.Member) control.Member {
			return control.Member{Pid: m.Pid, Command: m.Command, RSSBytes: m.RSSBytes}
		}),
		Policy: p.Policy, Port: p.Port,
	}
}

func logLines(ls []process.Line) []control.LogLine {
	return mapSlice(ls, func(l process.Line) control.LogLine {
		return control.LogLine{At: l.At, Line: l.Line, Stream: l.Stream}
	})
}
