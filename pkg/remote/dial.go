package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// The ways a remote call can fail before the daemon answers. Each error
// wraps one of them and control.ErrUnreachable (rollbridgectl exits 3).
var (
	// ErrSSH: ssh itself failed (no route, refused, authentication,
	// host key) — ssh exits 255 for all of those.
	ErrSSH = errors.New("ssh failed")
	// ErrRemoteBinary: ssh worked, but rollbridgectl could not be run on
	// the remote host (not on the PATH, not executable) or failed there.
	ErrRemoteBinary = errors.New("remote rollbridgectl failed")
	// ErrRemoteDaemon: the remote rollbridgectl ran, but no daemon answers
	// on the remote control socket.
	ErrRemoteDaemon = errors.New("remote daemon unreachable")
)

// Error is a remote call that failed, with the part that failed (Kind:
// ErrSSH, ErrRemoteBinary or ErrRemoteDaemon) and what it said on stderr.
type Error struct {
	Target Target
	Kind   error
	Exit   int    // the ssh command's exit status
	Stderr string // its last lines of stderr, trimmed
}

func (e *Error) Error() string {
	said := ""
	if e.Stderr != "" {
		said = ": " + e.Stderr
	}
	switch e.Kind {
	case ErrSSH:
		return fmt.Sprintf("ssh to %s failed (exit %d)%s; check that `ssh -p PORT USER@HOST` works on its own", e.Target, e.Exit, said)
	case ErrRemoteDaemon:
		return fmt.Sprintf("on %s, no daemon answers%s", e.Target, said)
	}
	if e.Exit == 127 || e.Exit == 126 {
		return fmt.Sprintf("rollbridgectl could not be run on %s (exit %d)%s; install it there, or name its path with --remote-ctl", e.Target, e.Exit, said)
	}
	return fmt.Sprintf("rollbridgectl dial-stdio failed on %s (exit %d)%s", e.Target, e.Exit, said)
}

// Unwrap matches Kind and control.ErrUnreachable.
func (e *Error) Unwrap() []error { return []error{e.Kind, control.ErrUnreachable} }

// exitUnreachable is rollbridgectl's exit status for "no daemon answers",
// which dial-stdio uses for the remote socket.
const exitUnreachable = 3

// Dialer runs the remote end through ssh. The zero value is not usable:
// set Target.
type Dialer struct {
	Target Target
	// SSH is the ssh client to run; "" means "ssh" on the PATH.
	SSH string
	// SSHConfig, when set, is passed to ssh as -F: an ssh config file
	// instead of ~/.ssh/config.
	SSHConfig string
	// RemoteCtl is the rollbridgectl to run on the remote host; "" means
	// "rollbridgectl" on the remote login shell's PATH.
	RemoteCtl string
	// Config and Socket are the remote command's -c and --socket: paths on
	// the remote host. Empty ones are left out (the remote defaults).
	Config, Socket string
}

// RemoteCommand is the command line ssh hands to the remote shell: the
// fixed dial-stdio command, each path single-quoted.
func (d *Dialer) RemoteCommand() string {
	ctl := d.RemoteCtl
	if ctl == "" {
		ctl = "rollbridgectl"
	}
	parts := []string{shellQuote(ctl), "dial-stdio"}
	if d.Config != "" {
		parts = append(parts, "--config", shellQuote(d.Config))
	}
	if d.Socket != "" {
		parts = append(parts, "--socket", shellQuote(d.Socket))
	}
	return strings.Join(parts, " ")
}

// Args are ssh's arguments: options, "--", the host, the remote command.
func (d *Dialer) Args() []string {
	var args []string
	if d.SSHConfig != "" {
		args = append(args, "-F", d.SSHConfig)
	}
	if d.Target.User != "" {
		args = append(args, "-l", d.Target.User)
	}
	if d.Target.Port != 0 {
		args = append(args, "-p", strconv.Itoa(d.Target.Port))
	}
	// -T: no terminal, the protocol is bytes; -e none: no escape
	// character in the stream; -x: no X11; ServerAlive: a dead link ends
	// the call instead of hanging it.
	args = append(args, "-T", "-e", "none", "-x", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
		"--", d.Target.Host, d.RemoteCommand())
	return args
}

// shellQuote quotes s for a POSIX shell: the remote side of ssh always
// runs its command through the user's shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Dial starts ssh and returns the connection: writes go to the remote
// dial-stdio's stdin, reads come from its stdout. Once the remote side
// ends, Read returns an *Error saying which part failed (or io.EOF when
// it ended cleanly). Close ends ssh. ctx bounds the whole call: when it
// ends, ssh is killed.
func (d *Dialer) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	ssh := d.SSH
	if ssh == "" {
		ssh = "ssh"
	}
	cmd := exec.Command(ssh, d.Args()...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("ssh to %s: %w", d.Target, err)
	}
	// A pipe of our own, not StdoutPipe: Wait (which runs concurrently
	// here) closes StdoutPipe's read end when ssh exits, which could drop
	// the answer's last bytes unread. Ours reads to EOF.
	stdout, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("ssh to %s: %w", d.Target, err)
	}
	cmd.Stdout = w
	c := &conn{target: d.Target, cmd: cmd, stdin: stdin, stdout: stdout, exited: make(chan struct{})}
	cmd.Stderr = &c.stderr
	err = cmd.Start()
	_ = w.Close() // ssh holds its own copy now
	if err != nil {
		_ = stdout.Close()
		return nil, &Error{Target: d.Target, Kind: ErrSSH, Exit: -1, Stderr: err.Error()}
	}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	c.stop = context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	return c, nil
}

// conn is a running ssh command as a connection.
type conn struct {
	target  Target
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  io.ReadCloser
	stderr  tail
	stop    func() bool
	exited  chan struct{}
	waitErr error // set before exited closes
	once    sync.Once
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.stdin.Write(p)
	if err != nil {
		if ferr := c.failure(); ferr != nil {
			return n, ferr
		}
	}
	return n, err
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.stdout.Read(p)
	if err == io.EOF {
		if ferr := c.failure(); ferr != nil {
			return n, ferr
		}
	}
	return n, err
}

// failure waits for ssh to exit (its stdout ended, so it is about to) and
// says which part failed, or nil when it exited 0.
func (c *conn) failure() error {
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		return &Error{Target: c.target, Kind: ErrSSH, Exit: -1, Stderr: "ssh closed its output but did not exit"}
	}
	var ee *exec.ExitError
	if !errors.As(c.waitErr, &ee) {
		return nil
	}
	code := ee.ExitCode()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	e := &Error{Target: c.target, Exit: code, Stderr: c.stderr.String()}
	switch code {
	case 255:
		e.Kind = ErrSSH
	case exitUnreachable:
		e.Kind = ErrRemoteDaemon
	default:
		e.Kind = ErrRemoteBinary
	}
	return e
}

// Close ends the remote command: its stdin closes (dial-stdio then ends),
// and ssh is killed if it has not exited a moment later.
func (c *conn) Close() error {
	c.once.Do(func() {
		c.stop()
		_ = c.stdin.Close() // the remote end sees EOF and exits
		select {
		case <-c.exited:
		case <-time.After(2 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		_ = c.stdout.Close() // read to its end, or abandoned
	})
	return nil
}

// tail keeps the last bytes of ssh's stderr, for the error message.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailBytes = 2048

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailBytes {
		t.buf = t.buf[len(t.buf)-tailBytes:]
	}
	return len(p), nil
}

// String is the stderr seen, trimmed, with lines joined by "; ".
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(t.buf)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
