package main

import (
	"fmt"

	"github.com/rollbridge/rollbridge-go/pkg/takeover"
	"github.com/urfave/cli/v2"
)

func predeployCleanupCommand() *cli.Command {
	return &cli.Command{
		Name:      "predeploy-cleanup",
		Usage:     "prepare a host for its first rollbridge deploy (stop legacy supervisors)",
		UsageText: "rollbridgectl predeploy-cleanup [-c PATH] [--release-path DIR] [--json]",
		Description: "Does nothing when a daemon already has an active release. Otherwise it stops\n" +
			"processes a crashed daemon left behind (statePath), quits the GNU Screen sessions\n" +
			"in legacyTakeover.screens, and stops every process whose command line contains all\n" +
			"strings of a legacyTakeover.processes entry, with its descendants (SIGTERM, then\n" +
			"SIGKILL after legacyTakeover.forceStopTimeoutMs). With --release-path, a running\n" +
			"daemon whose proxy host/port/upstreamHost or version differs from this config and\n" +
			"binary is restarted. Run it right before deploy --ensure-daemon.",
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "release-path", Usage: "the release about to be deployed (enables the daemon restart check)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: runPredeployCleanup,
	}
}

func runPredeployCleanup(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return configError(err)
	}
	res, err := takeover.Cleanup(c.Context, cfg, takeover.CleanupOptions{CheckDaemon: c.String("release-path") != ""})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printValue(c, res)
	}
	w := c.App.Writer
	if res.Skipped {
		fmt.Fprintln(w, "skipped:", res.Reason)
		return nil
	}
	if res.RestartedDaemon != "" {
		fmt.Fprintln(w, "restarted the daemon:", res.RestartedDaemon)
	}
	for _, o := range res.RecoveredOrphans {
		fmt.Fprintf(w, "stopped orphan %s (pid %d, release %s)\n", o.ID, o.Pid, o.ReleaseID)
	}
	for _, s := range res.Screens {
		fmt.Fprintf(w, "quit screen session %s\n", s)
	}
	for _, p := range res.Processes {
		how := "SIGTERM"
		if p.Killed {
			how = "SIGKILL"
		}
		fmt.Fprintf(w, "stopped %s: pid %d (%s) with %s\n", p.Name, p.Pid, p.Command, how)
	}
	if res.RestartedDaemon == "" && len(res.RecoveredOrphans)+len(res.Screens)+len(res.Processes) == 0 {
		fmt.Fprintln(w, "nothing to stop")
	}
	return nil
}
