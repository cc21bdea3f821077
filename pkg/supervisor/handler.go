package supervisor

import (
	"context"

	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// Handler adapts a Supervisor to control.Handler. Status and Shutdown need
// daemon-level facts (pid, bound address, closing the listeners), so the
// daemon supplies them.
type Handler struct {
	Sup      *Supervisor
	Status   func() any
	Shutdown func(ctx context.Context) error
}

// Handle dispatches one decoded request.
func (h *Handler) Handle(ctx context.Context, req *control.Request, progress func(control.Progress)) (any, error) {
	prog := func(msg string, data map[string]any) { progress(control.Progress{Message: msg, Data: data}) }
	s := h.Sup
	switch req.Command {
	case control.CmdDeploy:
		return s.Deploy(ctx, DeployRequest{ReleasePath: req.ReleasePath, ReleaseID: req.ReleaseID, Revision: req.Revision}, prog)
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
