package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/takeover"
	"github.com/urfave/cli/v2"
)

// configFlag is accepted by every command.
func configFlag() cli.Flag {
	return &cli.StringFlag{
		Name:        "config",
		Aliases:     []string{"c"},
		Usage:       "config file `PATH`",
		EnvVars:     []string{"ROLLBRIDGE_CONFIG"},
		Value:       "",
		DefaultText: config.DefaultFile,
	}
}

// socketFlag overrides control.path from the config.
func socketFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "socket",
		Usage:   "control socket `PATH` (default: control.path from the config)",
		EnvVars: []string{"ROLLBRIDGE_SOCKET"},
	}
}

// daemonFlags are the flags of every command that talks to the daemon.
func daemonFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{configFlag(), socketFlag()}, extra...)
}

// ensureFlags are shared by ensure-daemon and deploy --ensure-daemon.
func ensureFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "daemon-log-path", Usage: "`FILE` the detached daemon's output is appended to (default: beside the control socket, /run/rollbridge/APP.log)"},
		&cli.StringFlag{Name: "daemon-pid-path", Usage: "`FILE` the detached daemon's pid is written to (default: beside the control socket, /run/rollbridge/APP.pid)"},
		&cli.IntFlag{Name: "daemon-start-timeout-ms", Value: 10000, Usage: "how long to wait for the daemon to answer, in `MS`"},
	}
}

// ensureOptions reads ensureFlags and --socket. A start timeout that is
// not positive is a usage error with the Node original's message (it used
// to mean the default, which hid a typo such as a missing digit).
func ensureOptions(c *cli.Context) (takeover.EnsureOptions, error) {
	ms := c.Int("daemon-start-timeout-ms")
	if ms <= 0 {
		return takeover.EnsureOptions{}, usageErrorf("--daemon-start-timeout-ms must be a positive number.")
	}
	return takeover.EnsureOptions{Socket: c.String("socket"), LogPath: c.String("daemon-log-path"), PidPath: c.String("daemon-pid-path"),
		Timeout: time.Duration(ms) * time.Millisecond}, nil
}

// loadConfig loads the config named by --config with this process's
// environment. The evaluation runs in a child process bounded in time and
// memory (ROLLBRIDGE_EVAL_TIMEOUT_MS, ROLLBRIDGE_EVAL_MEMORY_MB) and ends
// with the command's context: Ctrl-C interrupts it.
func loadConfig(c *cli.Context) (*config.Config, error) {
	env := config.EnvMap(os.Environ())
	limits, err := config.LimitsFromEnv(env)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Loader{Limits: limits}.Load(c.Context, c.String("config"), env)
	if err != nil && c.Context.Err() != nil {
		return nil, fmt.Errorf("interrupted while evaluating the config: %w", c.Context.Err())
	}
	return cfg, err
}

// configError turns a config problem into one readable error.
func configError(err error) error {
	var issues config.Issues
	if errors.As(err, &issues) {
		var b strings.Builder
		fmt.Fprintf(&b, "the config has %d %s (run rollbridgectl validate for fixes):", len(issues), plural(len(issues), "issue", "issues"))
		for _, is := range issues {
			b.WriteString("\n  - " + is.Message)
		}
		return errors.New(b.String())
	}
	return err
}
