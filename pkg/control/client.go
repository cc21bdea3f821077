package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrUnreachable wraps every failure to reach a daemon (no socket file,
// nobody listening, permission denied), so callers can tell "no daemon"
// from "the daemon said no".
var ErrUnreachable = errors.New("daemon unreachable")

// UnreachableError describes why the socket could not be used.
type UnreachableError struct {
	Path string
	Err  error
}

func (e *UnreachableError) Error() string {
	hint := "is rollbridged running? start it with `rollbridged -c CONFIG` or `rollbridgectl ensure-daemon`"
	if errors.Is(e.Err, os.ErrPermission) {
		hint = "check the socket's owner and mode (control.owner/group/mode)"
	}
	return fmt.Sprintf("cannot reach the daemon at %s: %v (%s)", e.Path, unwrapSyscall(e.Err), hint)
}

func (e *UnreachableError) Unwrap() []error { return []error{ErrUnreachable, e.Err} }

func unwrapSyscall(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

// Client talks to one daemon socket. The zero value is not usable; set
// Path. A Client holds no connection between calls, so it is safe for
// concurrent use.
//
// Every method returns the command's result, an *Error from the daemon
// (errors.Is(err, ErrNotFound) and friends match its code), an
// *UnreachableError when no daemon answers (errors.Is(err, ErrUnreachable)),
// or ctx's error. Cancelling ctx closes the connection; the daemon goes on
// with the command.
type Client struct {
	Path string
}

// Deploy starts a prepared release. A non-nil progress asks for progress
// lines and sees each one.
func (c *Client) Deploy(ctx context.Context, req DeployRequest, progress func(Progress)) (DeployResult, error) {
	return call[DeployResult](ctx, c, req.wire(), progress)
}

// Rollback redeploys a retained release. A non-nil progress asks for
// progress lines and sees each one.
func (c *Client) Rollback(ctx context.Context, req RollbackRequest, progress func(Progress)) (DeployResult, error) {
	return call[DeployResult](ctx, c, req.wire(), progress)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	return call[Status](ctx, c, &Request{Command: CmdStatus}, nil)
}

// Stop stops a release and returns the status after the stop.
func (c *Client) Stop(ctx context.Context, req StopRequest) (Status, error) {
	return call[Status](ctx, c, req.wire(), nil)
}

// Restart restarts non-proxied processes in place.
func (c *Client) Restart(ctx context.Context, req RestartRequest) (RestartResult, error) {
	return call[RestartResult](ctx, c, req.wire(), nil)
}

// Logs returns the retained output of the matching processes.
func (c *Client) Logs(ctx context.Context, req LogsRequest) (LogsResult, error) {
	return call[LogsResult](ctx, c, req.wire(), nil)
}

// Events returns the newest events, oldest first.
func (c *Client) Events(ctx context.Context, req EventsRequest) (EventsResult, error) {
	return call[EventsResult](ctx, c, req.wire(), nil)
}

// Shutdown stops the daemon; it returns once every process has stopped and
// the socket file is gone.
func (c *Client) Shutdown(ctx context.Context) (ShutdownResult, error) {
	return call[ShutdownResult](ctx, c, &Request{Command: CmdShutdown}, nil)
}

// Listening reports whether anything accepts connections on the socket:
// a daemon, or another program that holds the path. It waits at most a
// second.
func (c *Client) Listening(ctx context.Context) bool {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return false
	}
	_ = conn.Close() // only probing
	return true
}

func call[R Result](ctx context.Context, c *Client, req *Request, progress func(Progress)) (R, error) {
	var out R
	raw, err := c.Do(ctx, req, progress)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("unreadable answer to %s from the daemon: %w", req.Command, err)
	}
	return out, nil
}

// Do sends req and waits for the final line. A non-nil progress sets
// req.Progress, asking for progress lines, and is called for each. It
// returns the final line as sent by the daemon (a JSON object with
// "status":"success"), for tools that pass the answer through unread;
// everything else uses the typed methods above. Errors are as for those
// methods.
func (c *Client) Do(ctx context.Context, req *Request, progress func(Progress)) (json.RawMessage, error) {
	if progress != nil && !req.Progress {
		r := *req // the caller's request stays as it was
		r.Progress = true
		req = &r
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, &UnreachableError{Path: c.Path, Err: err}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // unblocks the read below
	defer stop()

	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", req.Command, err)
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, &UnreachableError{Path: c.Path, Err: err}
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	for {
		raw, err := r.ReadBytes('\n')
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				return nil, fmt.Errorf("the daemon closed the connection before answering %s", req.Command)
			}
			return nil, fmt.Errorf("read the answer to %s: %w", req.Command, err)
		}
		var head line
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("unreadable answer from the daemon: %w", err)
		}
		switch head.Status {
		case "progress":
			if progress != nil {
				progress(Progress{Message: head.Message, Data: head.Data})
			}
		case "error":
			return nil, &Error{Code: head.Code, Message: head.Error}
		case "success":
			return json.RawMessage(raw), nil
		default:
			return nil, fmt.Errorf("unexpected answer from the daemon: %s", raw)
		}
	}
}
