// Command rollbridgectl is the command-line client of rollbridged: it
// validates configs and sends deploy, rollback, status and other commands
// over the daemon's control socket. Every command parses its flags, calls
// pkg/control (or pkg/doctor, pkg/takeover, pkg/systemd for work on the
// host), and renders the result.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rollbridge/rollbridge-go/pkg/config"
)

func main() {
	if config.EvaluatorRequested() { // re-executed by config.Loader to evaluate a config
		os.Exit(config.ServeEvaluation(os.Stdin, os.Stdout))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
