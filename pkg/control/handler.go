package control

import (
	"context"
	"time"
)

// Handler executes decoded requests: one method per command, so a command
// added to the protocol does not compile until every handler answers it,
// and every answer has its command's result type. The server calls the
// methods concurrently, one call per request.
//
// ctx ends when the server closes, not when the client hangs up: a deploy
// continues if its caller disconnects. progress may be called any number of
// times before Deploy or Rollback returns; it never blocks on a slow or gone
// client, and it sends nothing unless the request asked for progress.
//
// An error is sent as an error line: an *Error keeps its code, anything
// else is CodeFailed. Recording failures (the "command failed" event) is the
// handler's job, because only it knows whether a failure was already
// recorded elsewhere; the server records only the failures it produces
// itself (see NewServer).
type Handler interface {
	Deploy(ctx context.Context, req DeployRequest, progress func(Progress)) (DeployResult, error)
	Rollback(ctx context.Context, req RollbackRequest, progress func(Progress)) (DeployResult, error)
	Status(ctx context.Context) (Status, error)
	// Stop answers with the status after the stop.
	Stop(ctx context.Context, req StopRequest) (Status, error)
	Restart(ctx context.Context, req RestartRequest) (RestartResult, error)
	Logs(ctx context.Context, req LogsRequest) (LogsResult, error)
	Events(ctx context.Context, req EventsRequest) (EventsResult, error)
	// Shutdown answers once the daemon has stopped everything.
	Shutdown(ctx context.Context) (ShutdownResult, error)

	// The canary commands; DeployCanary and RolloutPromote may send
	// progress.
	DeployCanary(ctx context.Context, req DeployCanaryRequest, progress func(Progress)) (CanaryResult, error)
	RolloutSet(ctx context.Context, req RolloutSetRequest) (CanaryResult, error)
	RolloutPromote(ctx context.Context, progress func(Progress)) (CanaryResult, error)
	RolloutAbort(ctx context.Context) (CanaryResult, error)

	// DrainHost and UndrainHost answer with the host's state after the
	// change. DrainHost may send progress while it waits.
	DrainHost(ctx context.Context, req DrainHostRequest, progress func(Progress)) (HostResult, error)
	UndrainHost(ctx context.Context) (HostResult, error)

	TrafficHandler // pause, resume, maintenance (traffic.go)
}

// dispatch runs req on h and returns the encoded final line.
func dispatch(ctx context.Context, h Handler, req *Request, progress func(Progress)) ([]byte, error) {
	switch req.Command {
	case CmdDeploy:
		return reply(h.Deploy(ctx, DeployRequest{ReleasePath: req.ReleasePath, ReleaseID: req.ReleaseID, Revision: req.Revision}, progress))
	case CmdRollback:
		return reply(h.Rollback(ctx, RollbackRequest{ReleaseID: req.ReleaseID}, progress))
	case CmdStatus:
		return reply(h.Status(ctx))
	case CmdStop:
		return reply(h.Stop(ctx, StopRequest{ReleaseID: req.ReleaseID}))
	case CmdRestart:
		return reply(h.Restart(ctx, RestartRequest{ProcessID: req.ProcessID, Policy: req.Policy}))
	case CmdLogs:
		return reply(h.Logs(ctx, LogsRequest{ProcessID: req.ProcessID}))
	case CmdEvents:
		return reply(h.Events(ctx, EventsRequest{Limit: req.Limit}))
	case CmdShutdown:
		return reply(h.Shutdown(ctx))
	case CmdDeployCanary:
		return reply(h.DeployCanary(ctx, DeployCanaryRequest{ReleasePath: req.ReleasePath, ReleaseID: req.ReleaseID,
			Revision: req.Revision, Percent: req.Percent.Value}, progress))
	case CmdRolloutSet:
		return reply(h.RolloutSet(ctx, RolloutSetRequest{Percent: req.Percent.Value}))
	case CmdRolloutPromote:
		return reply(h.RolloutPromote(ctx, progress))
	case CmdRolloutAbort:
		return reply(h.RolloutAbort(ctx))

	case CmdDrainHost:
		return reply(h.DrainHost(ctx, DrainHostRequest{Wait: req.Wait, Quiet: time.Duration(req.QuietMs) * time.Millisecond,
			Timeout: time.Duration(req.TimeoutMs) * time.Millisecond}, progress))
	case CmdUndrainHost:
		return reply(h.UndrainHost(ctx))
	}
	if line, ok, err := dispatchTraffic(ctx, h, req); ok {
		return line, err
	}
	// DecodeRequest admits only the commands above.
	return nil, Errorf(CodeUnknownCommand, "unknown command %q", req.Command)
}

// handlerError marks an error the handler returned, as opposed to one the
// server produced while encoding the answer.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

func reply[R Result](r R, err error) ([]byte, error) {
	if err != nil {
		return nil, &handlerError{err}
	}
	b, err := EncodeResult(r)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
