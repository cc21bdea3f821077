package main

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
)

func rolloutCommand() *cli.Command {
	return &cli.Command{
		Name:  "rollout",
		Usage: "change, promote or abort the canary started by deploy --canary",
		Description: "A canary (rollbridgectl deploy --canary PERCENT) runs beside the active release\n" +
			"and takes a share of the new clients; each client keeps its side. Status shows\n" +
			"both releases and the split (\"canary\").",
		Subcommands: []*cli.Command{{
			Name:      "set",
			Usage:     "change the canary's share of new clients",
			UsageText: "rollbridgectl rollout set PERCENT [-c PATH]",
			Description: "PERCENT is 0 to 100 (two decimals). Clients that already have a side keep it:\n" +
				"the new share applies to new clients (with proxy.canaryCookie ''—hashed client\n" +
				"addresses—a larger share keeps every client already on the canary there, and a\n" +
				"smaller one moves some of them back).",
			Flags: daemonFlags(),
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usageErrorf("rollout set needs one argument: PERCENT (0 to 100)")
				}
				v, err := strconv.ParseFloat(c.Args().First(), 64)
				if err != nil {
					return usageErrorf(fmt.Sprintf("rollout set: %q is not a number; give PERCENT from 0 to 100", c.Args().First()))
				}
				p, err := percentArg(v, "PERCENT")
				if err != nil {
					return err
				}
				return callDaemon(c, control.CmdRolloutSet, func(cl *control.Client, ctx context.Context) (control.CanaryResult, error) {
					return cl.RolloutSet(ctx, control.RolloutSetRequest{Percent: p})
				})
			},
		}, {
			Name:      "promote",
			Usage:     "make the canary the active release; the previous one drains and stops",
			UsageText: "rollbridgectl rollout promote [-c PATH]",
			Description: "All new requests go to the canary at once. Its singletons replace the old\n" +
				"release's now (never while it was a canary); the old release drains and stops as\n" +
				"after a deploy. Progress goes to stderr.",
			Flags: daemonFlags(),
			Action: func(c *cli.Context) error {
				if err := noArgs(c, ""); err != nil {
					return err
				}
				return callDaemon(c, control.CmdRolloutPromote, func(cl *control.Client, ctx context.Context) (control.CanaryResult, error) {
					return cl.RolloutPromote(ctx, printProgress(c))
				})
			},
		}, {
			Name:      "abort",
			Usage:     "send every client back to the active release; the canary drains and stops",
			UsageText: "rollbridgectl rollout abort [-c PATH]",
			Flags:     daemonFlags(),
			Action: func(c *cli.Context) error {
				if err := noArgs(c, ""); err != nil {
					return err
				}
				return callDaemon(c, control.CmdRolloutAbort, func(cl *control.Client, ctx context.Context) (control.CanaryResult, error) {
					return cl.RolloutAbort(ctx)
				})
			},
		}},
	}
}

// percentArg checks a share given on the command line.
func percentArg(v float64, what string) (float64, error) {
	if math.IsNaN(v) || v < 0 || v > 100 {
		return 0, usageErrorf(fmt.Sprintf("%s must be a number from 0 to 100, got %v", what, v))
	}
	return v, nil
}
