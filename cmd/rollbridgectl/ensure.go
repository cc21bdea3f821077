package main

import (
	"fmt"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/takeover"
	"github.com/urfave/cli/v2"
)

func ensureDaemonCommand() *cli.Command {
	return &cli.Command{
		Name:      "ensure-daemon",
		Usage:     "start the daemon unless one answers, then print its status",
		UsageText: "rollbridgectl ensure-daemon [-c PATH] [--daemon-log-path P] [--daemon-pid-path P] [--daemon-start-timeout-ms N]",
		Description: "Idempotent, safe before every deploy:\n" +
			"  1. a daemon answers on the control socket: nothing to do;\n" +
			"  2. systemd knows rollbridge@APP.service: it is started over D-Bus;\n" +
			"  3. otherwise rollbridged is started detached (own session, this working directory),\n" +
			"     its output appended to --daemon-log-path and its pid written to --daemon-pid-path.\n" +
			"Then it waits until the daemon answers and prints the status JSON.",
		Flags: daemonFlags(ensureFlags()...),
		Action: func(c *cli.Context) error {
			st, err := ensure(c)
			if err != nil {
				return err
			}
			return printResult(c, st)
		},
	}
}

// ensure makes sure a daemon answers (takeover.Ensure), says on stderr how,
// and returns its status.
func ensure(c *cli.Context) (control.Status, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return control.Status{}, configError(err)
	}
	o, err := ensureOptions(c)
	if err != nil {
		return control.Status{}, err
	}
	e, err := takeover.Ensure(c.Context, cfg, o)
	if err != nil {
		return control.Status{}, err
	}
	fmt.Fprintf(c.App.ErrWriter, "rollbridgectl: %s\n", e.How)
	return e.Status, nil
}
