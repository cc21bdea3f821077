package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/takeover"
	"github.com/urfave/cli/v2"
)

// daemonClient returns a client for the control socket: the daemon on
// --host through ssh, else --socket, else the config's control.path, whose
// control.owner it then trusts too.
func daemonClient(c *cli.Context) (*control.Client, error) {
	if cl, err := remoteClient(c); cl != nil || err != nil {
		return cl, err
	}
	if p := c.String("socket"); p != "" {
		return &control.Client{Path: p}, nil
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, configError(err)
	}
	return takeover.Client(cfg.Control.Path, cfg), nil
}

// printProgress prints a deploy's or rollback's progress lines to stderr.
func printProgress(c *cli.Context) func(control.Progress) {
	return func(p control.Progress) {
		fmt.Fprintf(c.App.ErrWriter, "rollbridgectl: %s%s\n", printable(p.Message), formatData(p.Data))
	}
}

// daemonError turns a failed call into the command's error: an unreachable
// daemon exits 3, anything else names the command.
func daemonError(command string, err error) error {
	if errors.Is(err, control.ErrUnreachable) {
		return &exitError{code: exitUnreachable, msg: err.Error()}
	}
	return fmt.Errorf("%s: %w", command, err)
}

// callDaemon makes one call to the daemon and prints its result.
func callDaemon[R control.Result](c *cli.Context, command string, call func(cl *control.Client, ctx context.Context) (R, error)) error {
	r, err := ask(c, command, call)
	if err != nil {
		return err
	}
	return printResult(c, r)
}

// ask makes one call to the daemon; errors are the command's (daemonError).
func ask[R any](c *cli.Context, command string, call func(cl *control.Client, ctx context.Context) (R, error)) (R, error) {
	cl, err := daemonClient(c)
	if err != nil {
		var none R
		return none, err
	}
	r, err := call(cl, c.Context)
	if err != nil {
		return r, daemonError(command, err)
	}
	return r, nil
}

// printResult prints a result as the daemon's final line, indented:
// {"status":"success", ...}. Those are the bytes the daemon sent.
func printResult[R control.Result](c *cli.Context, r R) error {
	b, err := control.EncodeResult(r)
	if err != nil {
		return err
	}
	return printJSON(c, b)
}

// noArgs refuses positional arguments: every value is a flag.
func noArgs(c *cli.Context, hint string) error {
	if c.NArg() > 0 {
		return usageErrorf(fmt.Sprintf("unexpected argument %q%s", c.Args().First(), hint))
	}
	return nil
}
