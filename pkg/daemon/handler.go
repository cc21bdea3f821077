package daemon

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/metrics"
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
	metrics  *metrics.Metrics // nil without metrics

	host    hostDrainer
	traffic *traffic
}

// hostDrainer drains and undrains the host (host.go).
type hostDrainer interface {
	drainHost(ctx context.Context, req control.DrainHostRequest, progress func(control.Progress)) (control.HostResult, error)
	undrainHost() control.HostResult
	// fillHost adds the drain state to a status's proxy section.
	fillHost(p *control.ProxyInfo)
}

// DrainHost drains the host for the load balancer.
func (h *handler) DrainHost(ctx context.Context, req control.DrainHostRequest, progress func(control.Progress)) (control.HostResult, error) {
	res, err := h.host.drainHost(ctx, req, progress)
	if err != nil {
		return res, h.fail(control.CmdDrainHost, err)
	}
	return res, nil
}

// UndrainHost undrains the host.
func (h *handler) UndrainHost(context.Context) (control.HostResult, error) {
	return h.host.undrainHost(), nil
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
	if e, ok := errors.AsType[*control.Error](err); ok {
		return e // the handler chose the code itself
	}
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
	start := time.Now()
	res, err := h.sup.Deploy(ctx, supervisor.DeployRequest{ReleasePath: req.ReleasePath, ReleaseID: req.ReleaseID, Revision: req.Revision}, progressFunc(progress))
	h.recordCommand(control.CmdDeploy, start, err)
	if err != nil {
		return control.DeployResult{}, h.fail(control.CmdDeploy, err)
	}
	return deployResult(res), nil
}

// Rollback runs the supervisor's rollback.
func (h *handler) Rollback(ctx context.Context, req control.RollbackRequest, progress func(control.Progress)) (control.DeployResult, error) {
	start := time.Now()
	res, err := h.sup.Rollback(ctx, req.ReleaseID, progressFunc(progress))
	h.recordCommand(control.CmdRollback, start, err)
	if err != nil {
		return control.DeployResult{}, h.fail(control.CmdRollback, err)
	}
	return deployResult(res), nil
}

// Status answers from the daemon's status.
func (h *handler) Status(context.Context) (control.Status, error) {
	return h.statusResult(), nil
}

// statusResult is the daemon's status with the traffic and host drain
// state.
func (h *handler) statusResult() control.Status {
	st := statusResult(h.status())
	h.traffic.fill(&st.Proxy)
	h.host.fillHost(&st.Proxy)
	return st
}

// Stop stops a release and answers with the status after the stop.
func (h *handler) Stop(ctx context.Context, req control.StopRequest) (control.Status, error) {
	if err := h.sup.Stop(ctx, req.ReleaseID); err != nil {
		return control.Status{}, h.fail(control.CmdStop, err)
	}
	return h.statusResult(), nil
}

// Restart restarts processes in place.
func (h *handler) Restart(ctx context.Context, req control.RestartRequest) (control.RestartResult, error) {
	res, err := h.sup.Restart(ctx, req.ProcessID, req.Policy)
	if err != nil {
		return control.RestartResult{}, h.fail(control.CmdRestart, err)
	}
	return control.RestartResult{Restarted: res.Restarted}, nil
}

// Logs answers with the retained output.
func (h *handler) Logs(_ context.Context, req control.LogsRequest) (control.LogsResult, error) {
	logs, err := h.sup.Logs(req.ProcessID)
	if err != nil {
		return control.LogsResult{}, h.fail(control.CmdLogs, err)
	}
	return control.LogsResult{Processes: mapSlice(logs, func(l supervisor.ProcessLogs) control.ProcessLogs {
		lines := logLines(l.Logs)
		if lines == nil {
			lines = []control.LogLine{}
		}
		return control.ProcessLogs{ID: l.ID, Logs: lines, Source: l.Source}
	})}, nil
}

// Events answers with the event history.
func (h *handler) Events(_ context.Context, req control.EventsRequest) (control.EventsResult, error) {
	return control.EventsResult{Events: mapSlice(h.sup.Events(req.Limit), func(e events.Event) control.Event {
		data := e.Data
		if data == nil {
			data = map[string]any{}
		}
		return control.Event{At: control.At(e.At), Data: data, Message: string(e.Message)}
	})}, nil
}

// Pause holds new requests (traffic.go).
func (h *handler) Pause(ctx context.Context, req control.PauseRequest) (control.TrafficResult, error) {
	r, err := h.traffic.pause(ctx, req)
	if err != nil {
		return r, h.fail(control.CmdPause, err)
	}
	return r, nil
}

// Resume releases what a pause holds.
func (h *handler) Resume(context.Context) (control.TrafficResult, error) {
	return h.traffic.resume(), nil
}

// Maintenance turns maintenance on or off.
func (h *handler) Maintenance(_ context.Context, req control.MaintenanceRequest) (control.TrafficResult, error) {
	return h.traffic.maintenance(req), nil
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
	return control.DeployResult{ActiveReleaseID: r.ActiveReleaseID, PreviousReleaseID: r.PreviousReleaseID, ConfigProblem: r.ConfigProblem}
}

// statusLogBytes caps the output lines of one status answer, all its
// processes together (as process.Line.Size counts them): each process
// gets an equal share, at most process.StatusLogBytes. The full output
// is the logs command's.
const statusLogBytes = 1 << 20

// capStatusLogs trims each process's logs in s to its share of
// statusLogBytes, newest lines first, counting what it leaves out in
// LogsOmitted. s is the caller's own copy (a fresh status).
func capStatusLogs(s *supervisor.Status) {
	var all []*supervisor.ProcessStatus
	for i := range s.Releases {
		for j := range s.Releases[i].Processes {
			all = append(all, &s.Releases[i].Processes[j])
		}
	}
	for _, us := range [][]supervisor.UnitStatus{s.Services, s.Singletons} {
		for i := range us {
			all = append(all, &us[i].Process)
		}
	}
	if len(all) == 0 {
		return
	}
	share := min(process.StatusLogBytes, statusLogBytes/len(all))
	for _, p := range all {
		kept, omitted := process.Tail(p.Logs, share)
		p.Logs, p.LogsOmitted = kept, p.LogsOmitted+omitted
	}
}

func statusResult(s supervisor.Status) control.Status {
	capStatusLogs(&s)
	d := s.Daemon
	return control.Status{
		ActiveReleaseID: s.ActiveReleaseID,
		Application:     s.Application,
		Control:         controlInfo(s.Control),
		Orphans: mapSlice(s.Orphans, func(o state.Orphan) control.Orphan {
			var rel *string
			if o.ReleaseID != "" {
				rel = &o.ReleaseID
			}
			return control.Orphan{ID: o.ID, Pid: o.Pid, ReleaseID: rel}
		}),
		Proxy: control.ProxyInfo{Host: s.Proxy.Host, Port: s.Proxy.Port, UpstreamHost: s.Proxy.UpstreamHost,
			Held: s.Proxy.Held, HoldGaveUp: s.Proxy.HoldGaveUp, EventLoop: eventLoopInfo(s.Proxy.EventLoop)},
		Releases:   mapSlice(s.Releases, releaseEntry),
		Services:   mapSlice(s.Services, unitEntry),
		Singletons: mapSlice(s.Singletons, unitEntry),
		Daemon: &control.DaemonInfo{Pid: d.Pid, Version: d.Version, StartedAt: control.At(d.StartedAt),
			CommandInProgress: d.CommandInProgress, RestoreProblem: d.RestoreProblem},
		Canary: canaryInfo(s.Canary),
	}
}

func eventLoopInfo(e *supervisor.EventLoopStatus) *control.EventLoopInfo {
	if e == nil {
		return nil
	}
	return &control.EventLoopInfo{Threads: e.Threads, Served: e.Served, HandedOff: e.HandedOff}
}

// controlInfo echoes the config's control section the way the spec does:
// the mode as a number, owner and group as configured.
func controlInfo(c supervisor.ControlStatus) control.ControlInfo {
	out := control.ControlInfo{Path: c.Path}
	if c.Mode != nil {
		m := uint32(*c.Mode)
		out.Mode = &m
	}
	idOrName := func(v *config.IDOrName) *control.IDOrName {
		if v == nil {
			return nil
		}
		return &control.IDOrName{ID: v.ID, Name: v.Name}
	}
	out.Owner, out.Group = idOrName(c.Owner), idOrName(c.Group)
	return out
}

func releaseEntry(r supervisor.ReleaseStatus) control.Release {
	revision := r.ReleaseID // the spec's revision || releaseId
	if r.Revision != nil {
		revision = *r.Revision
	}
	return control.Release{
		ActivatedAt: at(r.ActivatedAt), ConnectionCount: r.ConnectionCount,
		Connections:    control.Connections{HTTP: r.Connections.HTTP, WebSocket: r.Connections.WebSocket},
		Requests:       r.Requests,
		DrainStartedAt: at(r.DrainStartedAt),
		Ports:          releasePorts(r),
		Processes:      mapSlice(r.Processes, processEntry),
		ReleaseID:      r.ReleaseID, ReleasePath: r.ReleasePath, Revision: revision, State: string(r.State),
		StoppedAt: at(r.StoppedAt), CreatedAt: control.At(r.CreatedAt), Error: deref(r.Error),
	}
}

// releasePorts are r's ports in config order (PortOrder), then any the
// order does not name, by id.
func releasePorts(r supervisor.ReleaseStatus) control.Ports {
	out := make(control.Ports, 0, len(r.Ports))
	for _, id := range r.PortOrder {
		if p, ok := r.Ports[id]; ok {
			out = append(out, control.Port{ID: id, Port: p})
		}
	}
	var rest []string
	for id := range r.Ports {
		if !slices.Contains(r.PortOrder, id) {
			rest = append(rest, id)
		}
	}
	slices.Sort(rest)
	for _, id := range rest {
		out = append(out, control.Port{ID: id, Port: r.Ports[id]})
	}
	return out
}

func unitEntry(u supervisor.UnitStatus) control.Unit {
	return control.Unit{ID: u.ID, Process: processEntry(u.Process), ReleaseID: u.ReleaseID}
}

func processEntry(p supervisor.ProcessStatus) control.Process {
	out := control.Process{
		Children: mapSlice(p.Children, func(m process.Member) control.Member {
			return control.Member{Command: m.Command, Pid: m.Pid, RSSBytes: m.RSSBytes}
		}),
		Command: p.Command, Cwd: p.Cwd, ID: p.ID, LastMemoryRestartAt: at(p.LastMemoryRestartAt),
		Logs: logLines(p.Logs), LogsOmitted: p.LogsOmitted, MemoryRestarts: p.MemoryRestarts, Pid: deref(p.Pid), Restarts: p.Restarts,
		RSSBytes: p.RSSBytes, StartedAt: at(p.StartedAt), State: string(p.State), UptimeMs: p.UptimeMs,
		Policy: p.Policy, Port: deref(p.Port), CgroupMemoryBytes: deref(p.CgroupMemoryBytes), Unit: p.Unit,
	}
	if out.Children == nil {
		out.Children = []control.Member{}
	}
	if out.Logs == nil {
		out.Logs = []control.LogLine{}
	}
	// Both are left out until the process exits, and from each start on;
	// after an exit the one that does not apply is null.
	if p.ExitCode != nil || p.ExitSignal != nil {
		out.ExitCode = control.Nullable[int]{Set: true, Value: p.ExitCode}
		out.ExitSignal = control.Nullable[string]{Set: true, Value: p.ExitSignal}
	}
	if p.LastStartReason != nil {
		out.LastStartReason = string(*p.LastStartReason)
	}
	return out
}

func logLines(ls []process.Line) []control.LogLine {
	return mapSlice(ls, func(l process.Line) control.LogLine {
		return control.LogLine{At: control.At(l.At), Line: l.Line, Stream: l.Stream}
	})
}

// at is a time that may not have happened yet (nil: left out).
func at(t *time.Time) control.Time {
	if t == nil {
		return control.Time{}
	}
	return control.At(*t)
}

// deref is *p, or the zero value (left out on the wire) for nil.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
