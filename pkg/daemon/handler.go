package daemon

import (
	"context"
	"errors"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/supervisor"
)

// handler adapts the supervisor to control.Handler: it is the one place
// where domain errors become wire codes. Status and Shutdown need
// daemon-level facts (pid, bound address, closing the listeners), so the
// daemon supplies them.
type handler struct {
	Sup      *supervisor.Supervisor
	Status   func() any
	Shutdown func(ctx context.Context) error
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

// Handle dispatches one decoded request.
func (h *handler) Handle(ctx context.Context, req *control.Request, progress func(control.Progress)) (any, error) {
	res, err := h.dispatch(ctx, req, progress)
	if err == nil {
		return res, nil
	}
	for _, c := range codes {
		if errors.Is(err, c.kind) {
			return nil, &control.Error{Code: c.code, Message: err.Error()}
		}
	}
	return nil, err
}

func (h *handler) dispatch(ctx context.Context, req *control.Request, progress func(control.Progress)) (any, error) {
	prog := func(msg string, data map[string]any) { progress(control.Progress{Message: msg, Data: data}) }
	s := h.Sup
	switch req.Command {
	case control.CmdDeploy:
		return s.Deploy(ctx, supervisor.DeployRequest{ReleasePath: req.ReleasePath, ReleaseID: req.ReleaseID, Revision: req.Revision}, prog)
	case control.CmdRollback:
		return s.Rollback(ctx, req.ReleaseID, prog)
	case control.CmdStatus:
		return h.Status(), nil
	case control.CmdStop:
		if err := s.Stop(ctx, req.ReleaseID); err != nil {
			return nil, err
		}
		return h.Status(), nil
	case control.CmdRestart:
		return s.Restart(ctx, req.Process, req.Policy)
	case control.CmdLogs:
		logs, err := s.Logs(req.Process)
		if err != nil {
			return nil, err
		}
		return map[string]any{"processes": logs}, nil
	case control.CmdEvents:
		return map[string]any{"events": s.Events(req.Limit)}, nil
	case control.CmdShutdown:
		if err := h.Shutdown(ctx); err != nil {
			return nil, err
		}
		return map[string]any{"message": "shutdown"}, nil
	}
	return nil, control.Errorf(control.CodeUnknownCommand, "unknown command %q", req.Command)
}
