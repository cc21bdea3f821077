package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
)

func deployCommand() *cli.Command {
	return &cli.Command{
		Name:      "deploy",
		Usage:     "start a prepared release, health-check it, switch traffic to it and drain the previous one",
		UsageText: "rollbridgectl deploy --release-path DIR [--release-id ID] [--revision SHA] [-c PATH]",
		Description: "Progress goes to stderr; the result goes to stdout as\n" +
			`{"status":"success","activeReleaseId":"...","previousReleaseId":"..."}.` + "\n" +
			"If the new release fails to start or health-check, the previous release keeps\n" +
			"serving and the command exits 1 with the cause. Only one deploy, rollback,\n" +
			"stop or restart runs at a time; another one fails at once (exit 1).",
		Flags: daemonFlags(
			&cli.StringFlag{Name: "release-path", Usage: "prepared release `DIR` ({{releasePath}}); required"},
			&cli.StringFlag{Name: "release-id", Usage: "release `ID` (default: --revision, else a UTC timestamp)"},
			&cli.StringFlag{Name: "revision", Usage: "VCS revision `SHA` ({{revision}})"},
			&cli.BoolFlag{Name: "ensure-daemon", Usage: "start the daemon first when none answers (see ensure-daemon)"},
			ensureFlags()[0], ensureFlags()[1], ensureFlags()[2],
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			if c.String("release-path") == "" {
				return usageErrorf("deploy needs --release-path DIR: the prepared release directory")
			}
			if c.Bool("ensure-daemon") {
				_, how, err := ensureDaemon(c)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "rollbridgectl: %s\n", how)
			}
			// The daemon runs elsewhere (under systemd, in /var/lib/rollbridge):
			// a relative path means relative to where this command runs.
			rel, err := filepath.Abs(c.String("release-path"))
			if err != nil {
				return err
			}
			req := control.DeployRequest{ReleasePath: rel, ReleaseID: c.String("release-id"), Revision: c.String("revision")}
			return callDaemon(c, control.CmdDeploy, func(cl *control.Client, ctx context.Context) (control.DeployResult, error) {
				return cl.Deploy(ctx, req, printProgress(c))
			})
		},
	}
}

func rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:      "rollback",
		Usage:     "redeploy a retained release (default: the one active before the current)",
		UsageText: "rollbridgectl rollback [--release-id ID] [-c PATH]",
		Description: "Runs the deploy flow on a retained release: start, health check, switch,\n" +
			"replace singletons, drain the current release. A failed rollback leaves the\n" +
			"current release active. Database migrations are not reverted.",
		Flags: daemonFlags(&cli.StringFlag{Name: "release-id", Usage: "retained release `ID` to roll back to"}),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			req := control.RollbackRequest{ReleaseID: c.String("release-id")}
			return callDaemon(c, control.CmdRollback, func(cl *control.Client, ctx context.Context) (control.DeployResult, error) {
				return cl.Rollback(ctx, req, printProgress(c))
			})
		},
	}
}

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
		Description: "Stopping the active release also stops the singletons; services keep running.\n" +
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
		UsageText: "rollbridgectl restart [--process ID | --policy companion|singleton|service] [-c PATH]",
		Description: "Without a selector, restarts every companion, singleton and service. A base id\n" +
			"restarts every replica (worker), an instance id one (worker#0). Stopped or\n" +
			"failed processes are revived. The proxied process is refused: use deploy.\n" +
			`Prints {"status":"success","restarted":[ids]}.`,
		Flags: daemonFlags(
			&cli.StringFlag{Name: "process", Usage: "process `ID` (base or instance id)"},
			&cli.StringFlag{Name: "policy", Usage: "restart every process with this `POLICY`"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			if c.String("process") != "" && c.String("policy") != "" {
				return usageErrorf("use --process or --policy, not both")
			}
			req := control.RestartRequest{Process: c.String("process"), Policy: c.String("policy")}
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
