// Command rollbridgectl is the command-line client of rollbridged: it
// validates configs and sends deploy, rollback, status and other commands
// over the daemon's control socket.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newApp().RunContext(ctx, os.Args)
	stop()
	if err != nil {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "rollbridgectl:", msg)
		}
		os.Exit(exitCode(err))
	}
}
