package main

import (
	"context"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "print the daemon's status as JSON, or watch it live (--watch)",
		UsageText: "rollbridgectl status [-c PATH] [--watch [--interval D] [--count N]]",
		Description: "Without --watch, prints the status answer as JSON (docs/protocol.md).\n" +
			"With --watch, shows a live view refreshed every --interval: the proxy (paused,\n" +
			"maintenance, host drained and since when), the releases (state,\n" +
			"connections, requests per second), the processes (state, pid, restarts, RSS, uptime)\n" +
			"and the newest events. On a terminal it redraws in place until Ctrl-C; otherwise it\n" +
			"prints one plain frame per interval (--count stops after N). A daemon that stops\n" +
			"answering (a restart) is shown as such and asked again at the next refresh.",
		Flags: daemonFlags(
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "show a live view instead of JSON"},
			&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "refresh every `D` (with --watch; at least 100ms)"},
			&cli.IntFlag{Name: "count", Usage: "with --watch, stop after `N` frames (0: until Ctrl-C)"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			if !c.Bool("watch") {
				if c.IsSet("interval") || c.IsSet("count") {
					return usageErrorf("--interval and --count go with --watch")
				}
				return callDaemon(c, control.CmdStatus, (*control.Client).Status)
			}
			if c.Duration("interval") < 100*time.Millisecond {
				return usageErrorf("--interval must be at least 100ms")
			}
			if c.Int("count") < 0 {
				return usageErrorf("--count must be 0 or more")
			}
			return watch(c, c.Duration("interval"), c.Int("count"))
		},
	}
}

func stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "stop the active release (or --release-id) and print the status",
		UsageText: "rollbridgectl stop [--release-id ID] [-c PATH]",
		Description: "Stops the release's own processes: its proxied process and companions. Services and\n" +
			"singletons keep running (a singleton that release started is no longer restarted after a\n" +
			"crash). A release that is stopped already is stopped again, which succeeds.\n" +
			"Until the next deploy the proxy answers 503 No active release.",
		Flags: daemonFlags(&cli.StringFlag{Name: "release-id", Usage: "release `ID` to stop"}),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			req := control.StopRequest{ReleaseID: c.String("release-id")}
			return callDaemon(c, control.CmdStop, func(cl *control.Client, ctx context.Context) (control.Status, error) {
				return cl.Stop(ctx, req)
			})
		},
	}
}

func restartCommand() *cli.Command {
	return &cli.Command{
		Name:      "restart",
		Usage:     "restart non-proxied processes in place",
		UsageText: "rollbridgectl restart [--process ID] [--policy companion|singleton|service] [-c PATH]",
		Description: "Without a selector, restarts every companion, singleton and service. A base id\n" +
			"restarts every replica (worker), an instance id one (worker#0); with both\n" +
			"selectors, only the processes matching both. Stopped or failed processes are\n" +
			"revived. The proxied process is refused: use deploy.\n" +
			`Prints {"status":"success","restarted":[ids]}.`,
		Flags: daemonFlags(
			&cli.StringFlag{Name: "process", Usage: "process `ID` (base or instance id)"},
			&cli.StringFlag{Name: "policy", Usage: "restart every process with this `POLICY`"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			policy := c.String("policy")
			switch policy {
			case "", "companion", "singleton", "service":
			case "proxied":
				return usageErrorf("--policy must be one of: companion, singleton, service. " +
					"The proxied process is never restarted in place: rollbridgectl deploy replaces it without downtime.")
			default:
				return usageErrorf("--policy must be one of: companion, singleton, service.")
			}
			req := control.RestartRequest{ProcessID: c.String("process"), Policy: policy}
			return callDaemon(c, control.CmdRestart, func(cl *control.Client, ctx context.Context) (control.RestartResult, error) {
				return cl.Restart(ctx, req)
			})
		},
	}
}

func shutdownCommand() *cli.Command {
	return &cli.Command{
		Name:      "shutdown",
		Usage:     "stop every managed process and the daemon",
		UsageText: "rollbridgectl shutdown [-c PATH]",
		Description: "Answers once every process has stopped and the control socket is removed:\n" +
			`{"status":"success","message":"shutdown"}.`,
		Flags: daemonFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			return callDaemon(c, control.CmdShutdown, (*control.Client).Shutdown)
		},
	}
}
