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
	"os/user"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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

// ErrUntrusted wraps the refusal to talk to a control socket served by a
// user the client does not trust (see Client).
var ErrUntrusted = errors.New("control socket served by an untrusted user")

// UntrustedError is a control socket whose listening process runs as a
// user other than root, the caller, or one of Client.TrustUIDs.
type UntrustedError struct {
	Path   string
	UID    int // the listening process's user
	Caller int // this process's effective user
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("the control socket %s is served by %s, which is neither root nor you (%s); refusing to talk to it: "+
		"if the daemon runs as that user, set control.owner to it; otherwise another user took the path first, so stop whatever listens there "+
		"and keep control.path in a directory only root and the daemon's user can write (the default, /run/rollbridge, is one)",
		e.Path, userName(e.UID), userName(e.Caller))
}

func (e *UntrustedError) Unwrap() error { return ErrUntrusted }

// userName is "name (uid N)", or "uid N" for a uid without a name.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// Client talks to one daemon socket. The zero value is not usable; set
// Path. A Client holds no connection between calls, so it is safe for
// concurrent use.
//
// Before it sends anything, a Client checks who listens on the socket
// (SO_PEERCRED: the user of the process that bound it, or systemd's for
// an activated socket) and refuses a user other than root, its own, or
// one of TrustUIDs. Otherwise anyone who got to the path first, say in a
// shared directory such as /tmp, could answer a deploy with "success" or
// read what it was sent.
//
// Every method returns the command's result, an *Error from the daemon
// (errors.Is(err, ErrNotFound) and friends match its code), an
// *UnreachableError when no daemon answers (errors.Is(err, ErrUnreachable)),
// an *UntrustedError (errors.Is(err, ErrUntrusted)), or ctx's error.
// Cancelling ctx closes the connection; the daemon goes on with the
// command.
type Client struct {
	Path string
	// TrustUIDs are users, besides root and the caller, whose daemon the
	// client talks to: control.owner's, when the daemon runs as that user.
	TrustUIDs []int
	// Dial, when set, opens the connection instead of dialling the Unix
	// socket at Path: the protocol carried by another transport, such as
	// ssh to a remote host's `rollbridgectl dial-stdio` (rollbridgectl
	// --host). Path then only names the daemon in messages, and the peer
	// check is the remote end's to make. Its errors, and those of the
	// connection it returns, are passed on as they are, so they should say
	// which part failed (wrapping ErrUnreachable where no daemon answered).
	Dial func(ctx context.Context) (io.ReadWriteCloser, error)
}

// checkPeer refuses a connection whose listening side runs as a user the
// client does not trust.
func (c *Client) checkPeer(conn net.Conn) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("inspect the control socket %s: %w", c.Path, err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("inspect the control socket %s: %w", c.Path, err)
	}
	if credErr != nil {
		return fmt.Errorf("ask who serves the control socket %s: %w", c.Path, credErr)
	}
	uid, self := int(cred.Uid), os.Geteuid()
	if uid == 0 || uid == self || slices.Contains(c.TrustUIDs, uid) {
		return nil
	}
	return &UntrustedError{Path: c.Path, UID: uid, Caller: self}
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

// DrainHost drains the host (see DrainHostRequest). A non-nil progress
// asks for progress lines while it waits and sees each one.
func (c *Client) DrainHost(ctx context.Context, req DrainHostRequest, progress func(Progress)) (HostResult, error) {
	return call[HostResult](ctx, c, req.wire(), progress)
}

// UndrainHost undrains the host: its health answer is 200 again while a
// release is active.
func (c *Client) UndrainHost(ctx context.Context) (HostResult, error) {
	return call[HostResult](ctx, c, &Request{Command: CmdUndrainHost}, nil)
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

// Connect opens a connection to the daemon for a tool that relays the
// protocol without reading it (rollbridgectl dial-stdio): through Dial
// when set, else to the Unix socket at Path, refused like every call when
// an untrusted user serves it. The caller closes it.
func (c *Client) Connect(ctx context.Context) (io.ReadWriteCloser, error) { return c.dial(ctx) }

// dial opens a connection to the daemon: through Dial when set, else to
// the Unix socket at Path, checked with checkPeer.
func (c *Client) dial(ctx context.Context) (io.ReadWriteCloser, error) {
	if c.Dial != nil {
		return c.Dial(ctx)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, &UnreachableError{Path: c.Path, Err: err}
	}
	if err := c.checkPeer(conn); err != nil {
		_ = conn.Close() // refused before anything was sent
		return nil, err
	}
	return conn, nil
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
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // unblocks the read below
	defer stop()

	b, err := marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", req.Command, err)
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		if c.Dial != nil {
			return nil, fmt.Errorf("send %s to %s: %w", req.Command, c.Path, err)
		}
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
			if c.Dial != nil {
				return nil, err // the transport says which part failed (see Dial)
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
