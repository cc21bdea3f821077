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
	LogPath string        // a detached daemon's output; "" means /tmp/rollbridge-APP.log
	PidPath string        // a detached daemon's pid file; "" means /tmp/rollbridge-APP.pid
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
	client := &control.Client{Path: sock}
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
		logPath = "/tmp/rollbridge-" + cfg.Application + ".log"
	}
	if pidPath == "" {
		pidPath = "/tmp/rollbridge-" + cfg.Application + ".pid"
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

// spawnDetached starts rollbridged in its own session, appending its output
// to logPath, and writes its pid. The directories of both files are created
// first, as the original's mkdir -p did, so a fresh host needs no set-up.
// The returned channel is closed if it exits.
func spawnDetached(daemon, cfgPath, logPath, pidPath string) (<-chan struct{}, error) {
	for _, p := range []string{logPath, pidPath} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("create the directory of %s: %w", p, err)
		}
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("daemon log %s: %w", logPath, err)
	}
	defer logf.Close()
	cmd := exec.Command(daemon, "--config", cfgPath)
	cmd.Dir = filepath.Dir(cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // survives this command and its terminal
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start rollbridged: %w", err)
	}
	if err := os.WriteFile(pidPath, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("daemon pid file %s: %w", pidPath, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // reaps it if it dies while we wait; otherwise we exit first
		close(exited)
	}()
	return exited, nil
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
