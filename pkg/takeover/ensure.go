package takeover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/systemd"
)

// DefaultStartTimeout is how long Ensure waits for a daemon it started.
const DefaultStartTimeout = 10 * time.Second

// EnsureOptions say where Ensure looks for a daemon and how it starts one.
// The zero value uses the config's socket and the defaults below.
type EnsureOptions struct {
	Socket  string        // control socket; "" means the config's control.path
	LogPath string        // a detached daemon's output; "" means beside the socket (DefaultLogPath)
	PidPath string        // a detached daemon's pid file; "" means beside the socket (DefaultPidPath)
	Timeout time.Duration // how long to wait for a started daemon; 0 means DefaultStartTimeout
	Daemon  string        // the rollbridged binary; "" means FindDaemon()
}

// Ensured is a daemon that answers, and how it came to.
type Ensured struct {
	Status control.Status
	// How says what Ensure did: found a running daemon, started the
	// systemd unit, or started a detached rollbridged.
	How string
}

// Ensure returns the status of the daemon for cfg, starting it first when
// none answers: through systemd when rollbridge@APP.service exists, else as
// a detached rollbridged in its own session. It is idempotent.
func Ensure(ctx context.Context, cfg *config.Config, o EnsureOptions) (Ensured, error) {
	sock := cfg.Control.Path
	if o.Socket != "" {
		sock = o.Socket
	}
	client := Client(sock, cfg)
	st, err := client.Status(ctx)
	if err == nil {
		return Ensured{st, "daemon already running on " + sock}, nil
	}
	if !errors.Is(err, control.ErrUnreachable) {
		return Ensured{}, err
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	unit := systemd.ServiceUnit(cfg.Application)
	if systemd.Booted() {
		started, err := startUnit(ctx, unit)
		if err != nil {
			return Ensured{}, err
		}
		if started {
			st, err := waitForDaemon(ctx, client, nil)
			if err != nil {
				return Ensured{}, fmt.Errorf("%s started but the daemon did not answer on %s within %v: %w (see journalctl -u %s)", unit, sock, timeout, err, unit)
			}
			return Ensured{st, "started " + unit + " through systemd"}, nil
		}
	}
	logPath, pidPath, daemon := o.LogPath, o.PidPath, o.Daemon
	if logPath == "" {
		logPath = DefaultLogPath(sock)
	}
	if pidPath == "" {
		pidPath = DefaultPidPath(sock)
	}
	if daemon == "" {
		daemon = FindDaemon()
	}
	exited, err := spawnDetached(daemon, cfg.Path, logPath, pidPath)
	if err != nil {
		return Ensured{}, err
	}
	st, err = waitForDaemon(ctx, client, exited)
	if err != nil {
		return Ensured{}, fmt.Errorf("started rollbridged but it did not answer on %s: %w; its log %s ends with:\n%s", sock, err, logPath, tail(logPath, 10))
	}
	return Ensured{st, fmt.Sprintf("started a detached rollbridged (log %s, pid file %s)", logPath, pidPath)}, nil
}

// startUnit starts the app's service when systemd knows it; false means
// there is no such unit (or no bus to ask).
func startUnit(ctx context.Context, unit string) (bool, error) {
	m, err := systemd.Connect(ctx)
	if err != nil {
		return false, nil // no usable bus (e.g. unprivileged user): fall back to a detached daemon
	}
	defer m.Close()
	st, err := m.Unit(ctx, unit)
	if err != nil || !st.Exists() {
		return false, nil
	}
	return true, m.Start(ctx, unit)
}

// DefaultLogPath is where a detached daemon's output goes unless
// --daemon-log-path says otherwise: beside its control socket, named
// after it (/run/rollbridge/shop.sock -> /run/rollbridge/shop.log). The
// original used /tmp/rollbridge-APP.log, where another local user could
// plant a symlink that made root append to a file of their choice; the
// socket's directory is one only root and the daemon's user can write
// (the daemon refuses any other).
func DefaultLogPath(socket string) string { return strings.TrimSuffix(socket, ".sock") + ".log" }

// DefaultPidPath is where a detached daemon's pid is written unless
// --daemon-pid-path says otherwise: beside its control socket, as
// DefaultLogPath.
func DefaultPidPath(socket string) string { return strings.TrimSuffix(socket, ".sock") + ".pid" }

// spawnDetached starts rollbridged in its own session and in this
// process's working directory, appending its output to logPath, and writes
// its pid. The directories of both files are created first, as the
// original's mkdir -p did, so a fresh host needs no set-up.
// Both files are opened as openOwned says. The returned channel is closed
// if it exits.
func spawnDetached(daemon, cfgPath, logPath, pidPath string) (<-chan struct{}, error) {
	for _, p := range []string{logPath, pidPath} {
		if err := makeDir(filepath.Dir(p), p); err != nil {
			return nil, err
		}
	}
	// 0600: the daemon's log carries process output and failed commands.
	logf, err := openOwned(logPath, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("daemon log %s: %w", logPath, err)
	}
	defer logf.Close()
	pidf, err := openOwned(pidPath, os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("daemon pid file %s: %w", pidPath, err)
	}
	defer pidf.Close()
	// The daemon runs in the caller's working directory, as the Node
	// original's did: a relative control.path, statePath or release path
	// then means the same file to the daemon as to the rollbridgectl
	// commands run from there.
	cmd := exec.Command(daemon, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // survives this command and its terminal
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start rollbridged: %w", err)
	}
	if err := writePid(pidf, cmd.Process.Pid); err != nil {
		return nil, fmt.Errorf("daemon pid file %s: %w", pidPath, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // reaps it if it dies while we wait; otherwise we exit first
		close(exited)
	}()
	return exited, nil
}

// makeDir creates dir (for the file path) and its parents, as mkdir -p
// does. config.RuntimeDir gets mode 0755 whatever the umask, as
// tmpfiles.d would have made it, so deploy users can reach the socket in
// it. A caller who may not create it (a user other than root, with the
// default control.path) is told what to do instead.
func makeDir(dir, path string) error {
	err := os.MkdirAll(dir, 0o755)
	if err == nil && dir == config.RuntimeDir {
		err = os.Chmod(dir, 0o755)
	}
	if err == nil {
		return nil
	}
	if dir == config.RuntimeDir && errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("cannot create %s for %s (permission denied): it is the directory of the default control.path; "+
			"create it as root (install -d -m 0755 %s, or systemd-tmpfiles --create with packaging/systemd/rollbridge.tmpfiles.conf), "+
			"or set control.path to a socket in a directory you own (the daemon's log and pid files go beside it)", dir, path, dir)
	}
	return fmt.Errorf("create the directory of %s: %w", path, err)
}

// openOwned opens path for writing, creating it with mode perm, and makes
// sure it is a file of the caller's own: it does not follow a symlink at
// path, and refuses anything but a regular file that belongs to this user
// and has no other name (a hard link to, say, /etc/shadow would pass the
// other checks). Nothing is truncated or written before those checks; a
// caller that wants the file empty truncates it afterwards. Whoever can
// write in the directory could otherwise have made root write elsewhere.
func openOwned(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|os.O_CREATE|syscall.O_NOFOLLOW, perm)
	if err != nil {
		// ELOOP, or EACCES for another user's symlink in a sticky
		// directory: say what is in the way, not only the errno.
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s is a symbolic link; refusing to write through it (remove it)", path)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close() // not usable
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		err = fmt.Errorf("%s is not a regular file (%s); remove it", path, fi.Mode().Type())
	case ok && int(st.Uid) != os.Geteuid():
		err = fmt.Errorf("%s belongs to uid %d, not to you (uid %d); someone else may have put it there: remove it", path, st.Uid, os.Geteuid())
	case ok && st.Nlink > 1:
		err = fmt.Errorf("%s has %d names (hard links); refusing to write to it: remove it", path, st.Nlink)
	}
	if err != nil {
		_ = f.Close() // refused
		return nil, err
	}
	return f, nil
}

// writePid replaces the content of f, a pid file from openOwned, with pid.
func writePid(f *os.File, pid int) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(pid)+"\n"), 0)
	return err
}

// waitForDaemon polls the socket until the daemon answers status.
func waitForDaemon(ctx context.Context, client *control.Client, exited <-chan struct{}) (control.Status, error) {
	for {
		st, err := client.Status(ctx)
		if err == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return control.Status{}, ctx.Err()
		case <-exited:
			return control.Status{}, errors.New("rollbridged exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of a file, indented, for an error message.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (unreadable: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// FindDaemon locates rollbridged: next to the running binary, else on
// PATH, else the packaged /usr/local/bin/rollbridged.
func FindDaemon() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "rollbridged")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("rollbridged"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return "/usr/local/bin/rollbridged"
}
