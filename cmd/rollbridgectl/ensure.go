package main

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
	"github.com/urfave/cli/v2"
)

// ensureFlags are shared by ensure-daemon and deploy --ensure-daemon.
func ensureFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "daemon-log-path", Usage: "`FILE` the detached daemon's output is appended to (default /tmp/rollbridge-APP.log)"},
		&cli.StringFlag{Name: "daemon-pid-path", Usage: "`FILE` the detached daemon's pid is written to (default /tmp/rollbridge-APP.pid)"},
		&cli.IntFlag{Name: "daemon-start-timeout-ms", Value: 10000, Usage: "how long to wait for the daemon to answer, in `MS`"},
	}
}

func ensureDaemonCommand() *cli.Command {
	return &cli.Command{
		Name:      "ensure-daemon",
		Usage:     "start the daemon unless one answers, then print its status",
		UsageText: "rollbridgectl ensure-daemon [-c PATH] [--daemon-log-path P] [--daemon-pid-path P] [--daemon-start-timeout-ms N]",
		Description: "Idempotent, safe before every deploy:\n" +
			"  1. a daemon answers on the control socket: nothing to do;\n" +
			"  2. systemd knows rollbridge@APP.service: it is started over D-Bus;\n" +
			"  3. otherwise rollbridged is started detached (own session), its output appended\n" +
			"     to --daemon-log-path and its pid written to --daemon-pid-path.\n" +
			"Then it waits until the daemon answers and prints the status JSON.",
		Flags: daemonFlags(ensureFlags()...),
		Action: func(c *cli.Context) error {
			st, how, err := ensureDaemon(c)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "rollbridgectl: %s\n", how)
			return printResult(c, st)
		},
	}
}

// ensureDaemon returns the daemon's status, starting it first if needed,
// and says how it got there.
func ensureDaemon(c *cli.Context) (control.Status, string, error) {
	var none control.Status
	cfg, err := loadConfig(c)
	if err != nil {
		return none, "", configError(err)
	}
	sock := cfg.Control.Path
	if s := c.String("socket"); s != "" {
		sock = s
	}
	client := &control.Client{Path: sock}
	if st, err := client.Status(c.Context); err == nil {
		return st, "daemon already running on " + sock, nil
	} else if !errors.Is(err, control.ErrUnreachable) {
		return none, "", err
	}
	timeout := time.Duration(c.Int("daemon-start-timeout-ms")) * time.Millisecond
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()

	unit := systemd.ServiceUnit(cfg.Application)
	if systemd.Booted() {
		started, err := startUnit(ctx, unit)
		if err != nil {
			return none, "", err
		}
		if started {
			raw, err := waitForDaemon(ctx, client, nil)
			if err != nil {
				return none, "", fmt.Errorf("%s started but the daemon did not answer on %s within %v: %w (see journalctl -u %s)", unit, sock, timeout, err, unit)
			}
			return raw, "started " + unit + " through systemd", nil
		}
	}
	logPath := c.String("daemon-log-path")
	if logPath == "" {
		logPath = "/tmp/rollbridge-" + cfg.Application + ".log"
	}
	pidPath := c.String("daemon-pid-path")
	if pidPath == "" {
		pidPath = "/tmp/rollbridge-" + cfg.Application + ".pid"
	}
	exited, err := spawnDetached(cfg, logPath, pidPath)
	if err != nil {
		return none, "", err
	}
	raw, err := waitForDaemon(ctx, client, exited)
	if err != nil {
		return none, "", fmt.Errorf("started rollbridged but it did not answer on %s: %w; its log %s ends with:\n%s", sock, err, logPath, tail(logPath, 10))
	}
	return raw, fmt.Sprintf("started a detached rollbridged (log %s, pid file %s)", logPath, pidPath), nil
}

// startUnit starts the app's service when systemd knows it; false means
// there is no such unit.
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
// to logPath, and writes its pid. The returned channel is closed if it exits.
func spawnDetached(cfg *config.Config, logPath, pidPath string) (<-chan struct{}, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("daemon log %s: %w", logPath, err)
	}
	defer logf.Close()
	cmd := exec.Command(findRollbridged(), "--config", cfg.Path)
	cmd.Dir = filepath.Dir(cfg.Path)
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
			return st, ctx.Err()
		case <-exited:
			return st, errors.New("rollbridged exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

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
