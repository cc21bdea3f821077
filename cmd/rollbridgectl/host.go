package main

import (
	"context"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
)

func drainHostCommand() *cli.Command {
	return &cli.Command{
		Name:      "drain-host",
		Usage:     "turn the host health answer (proxy.hostHealthPath) to 503, so the load balancer sends no new requests",
		UsageText: "rollbridgectl drain-host [--wait [--quiet D] [--timeout D]] [-c PATH]",
		Description: "The proxy answers proxy.hostHealthPath with 503 \"host drained\" from now on, and\n" +
			"keeps serving every request that still arrives, so nothing routed here fails. The\n" +
			"drain is kept in the state file: a restarted daemon stays drained until undrain-host.\n" +
			"With --wait it answers once no request has arrived for --quiet (the load balancer has\n" +
			"noticed), and fails after --timeout, the host staying drained. Refused when\n" +
			"proxy.hostHealthPath is not set. Prints {\"status\":\"success\",\"drained\":true,...}.\n" +
			"See docs/fleet.md for rolling deploys across hosts.",
		Flags: daemonFlags(
			&cli.BoolFlag{Name: "wait", Usage: "answer once no request arrived for --quiet"},
			&cli.DurationFlag{Name: "quiet", Value: control.DefaultDrainQuiet, Usage: "with --wait, the quiet period `D` that means the balancer stopped sending"},
			&cli.DurationFlag{Name: "timeout", Value: control.DefaultDrainTimeout, Usage: "with --wait, give up after `D` (the host stays drained)"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			if !c.Bool("wait") && (c.IsSet("quiet") || c.IsSet("timeout")) {
				return usageErrorf("--quiet and --timeout go with --wait")
			}
			quiet, timeout := c.Duration("quiet"), c.Duration("timeout")
			if quiet < time.Millisecond || timeout < time.Millisecond || quiet > 24*time.Hour || timeout > 24*time.Hour {
				return usageErrorf("--quiet and --timeout must be from 1ms to 24h")
			}
			req := control.DrainHostRequest{Wait: c.Bool("wait"), Quiet: quiet, Timeout: timeout}
			return callDaemon(c, control.CmdDrainHost, func(cl *control.Client, ctx context.Context) (control.HostResult, error) {
				return cl.DrainHost(ctx, req, printProgress(c))
			})
		},
	}
}

func undrainHostCommand() *cli.Command {
	return &cli.Command{
		Name:      "undrain-host",
		Usage:     "turn the host health answer back to 200 (while a release is active)",
		UsageText: "rollbridgectl undrain-host [-c PATH]",
		Description: "Ends drain-host: proxy.hostHealthPath answers 200 again while a release is active,\n" +
			"and the load balancer sends traffic here at its next check. Prints\n" +
			"{\"status\":\"success\",\"drained\":false,...}.",
		Flags: daemonFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			return callDaemon(c, control.CmdUndrainHost, (*control.Client).UndrainHost)
		},
	}
}
