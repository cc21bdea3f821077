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

// Client talks to one daemon socket. The zero value is not usable; set Path.
type Client struct {
	Path string
}

// Do sends req and waits for the final line, calling progress for each
// progress line. It returns the final line as sent by the daemon (a JSON
// object with "status":"success"), an *Error from the daemon, or an
// *UnreachableError. Cancelling ctx closes the connection; the daemon goes
// on with the command.
func (c *Client) Do(ctx context.Context, req *Request, progress func(Progress)) (json.RawMessage, error) {
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
		return nil, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, &UnreachableError{Path: c.Path, Err: err}
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				return nil, fmt.Errorf("the daemon closed the connection before answering %s", req.Command)
			}
			return nil, err
		}
		var head struct {
			Status  string         `json:"status"`
			Error   string         `json:"error"`
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Data    map[string]any `json:"data"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
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
			return json.RawMessage(line), nil
		default:
			return nil, fmt.Errorf("unexpected answer from the daemon: %s", line)
		}
	}
}

// Call is Do without progress, decoding the final line into out (if non-nil).
func (c *Client) Call(ctx context.Context, req *Request, out any) error {
	raw, err := c.Do(ctx, req, nil)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(raw, out)
}
