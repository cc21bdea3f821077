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
		UsageText: "rollbridgectl deploy --release-path DIR [--release-id ID] [--revision SHA] [--canary PERCENT] [-c PATH]",
		Description: "Progress goes to stderr; the result goes to stdout as\n" +
			`{"status":"success","activeReleaseId":"...","previousReleaseId":"..."}.` + "\n" +
			"If the new release fails to start or health-check, the previous release keeps\n" +
			"serving and the command exits 1 with the cause. Only one deploy, rollback,\n" +
			"stop or restart runs at a time; another one fails at once (exit 1).\n\n" +
			"With --canary PERCENT the release starts and health-checks the same way but\n" +
			"then runs beside the active one and takes PERCENT of the new clients, each kept\n" +
			"on its side (proxy.canaryCookie); see rollbridgectl rollout for set, promote\n" +
			"and abort. The result is then\n" +
			`{"status":"success","activeReleaseId":"...","canaryReleaseId":"...","percent":N}.`,
		Flags: daemonFlags(append([]cli.Flag{
			&cli.StringFlag{Name: "release-path", Usage: "prepared release `DIR` ({{releasePath}}); required"},
			&cli.StringFlag{Name: "release-id", Usage: "release `ID` (default: --revision, else a UTC timestamp)"},
			&cli.StringFlag{Name: "revision", Usage: "VCS revision `SHA` ({{revision}})"},
			&cli.Float64Flag{Name: "canary", Usage: "run the release as a canary taking `PERCENT` (0-100) of new clients"},
			&cli.BoolFlag{Name: "ensure-daemon", Usage: "start the daemon first when none answers (see ensure-daemon)"},
		}, ensureFlags()...)...),
		Action: runDeploy,
	}
}

func runDeploy(c *cli.Context) error {
	if err := noArgs(c, ""); err != nil {
		return err
	}
	if c.String("release-path") == "" {
		return usageErrorf("deploy needs --release-path DIR: the prepared release directory")
	}
	if h := c.String("host"); h != "" {
		if c.Bool("ensure-daemon") {
			return usageErrorf("--ensure-daemon starts a daemon on this host, so it does not go with --host; on " + h + " let systemd start it (systemctl enable --now rollbridge@APP)")
		}
		if !filepath.IsAbs(c.String("release-path")) {
			return usageErrorf("with --host, --release-path must be an absolute path on the remote host")
		}
	}
	if c.Bool("ensure-daemon") {
		if _, err := ensure(c); err != nil {
			return err
		}
	}
	// The daemon runs elsewhere (under systemd, in /var/lib/rollbridge):
	// a relative path means relative to where this command runs.
	rel, err := filepath.Abs(c.String("release-path"))
	if err != nil {
		return fmt.Errorf("resolve --release-path: %w", err)
	}
	if c.IsSet("canary") {
		p, err := percentArg(c.Float64("canary"), "--canary")
		if err != nil {
			return err
		}
		req := control.DeployCanaryRequest{ReleasePath: rel, ReleaseID: c.String("release-id"), Revision: c.String("revision"), Percent: p}
		return callDaemon(c, control.CmdDeployCanary, func(cl *control.Client, ctx context.Context) (control.CanaryResult, error) {
			return cl.DeployCanary(ctx, req, printProgress(c))
		})
	}
	req := control.DeployRequest{ReleasePath: rel, ReleaseID: c.String("release-id"), Revision: c.String("revision")}
	return callDaemon(c, control.CmdDeploy, func(cl *control.Client, ctx context.Context) (control.DeployResult, error) {
		return cl.Deploy(ctx, req, printProgress(c))
	})
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
