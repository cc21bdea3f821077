package main

import (
	"context"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "print the daemon's status as JSON",
		UsageText: "rollbridgectl status [-c PATH]",
		Flags:     daemonFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			return callDaemon(c, control.CmdStatus, (*control.Client).Status)
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
