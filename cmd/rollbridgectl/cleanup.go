package main

import (
	"fmt"

	"github.com/rollbridge/rollbridge-go/pkg/takeover"
	"github.com/urfave/cli/v2"
)

func predeployCleanupCommand() *cli.Command {
	return &cli.Command{
		Name:      "predeploy-cleanup",
		Usage:     "prepare a host for a deploy: stop a mismatched daemon, orphans and legacy supervisors",
		UsageText: "rollbridgectl predeploy-cleanup [-c PATH] [--release-path DIR] [--json]",
		Description: "Reuses a daemon with an active release whose proxy host/port/upstreamHost match the\n" +
			"config and does nothing else. Any other daemon is shut down (the next deploy\n" +
			"--ensure-daemon starts a new one); under systemd socket activation a proxy change is\n" +
			"refused instead. Then it stops processes a crashed daemon left behind (statePath),\n" +
			"quits the GNU Screen sessions in legacyTakeover.screens, and stops their processes and\n" +
			"every process whose command line contains all strings of a legacyTakeover.processes\n" +
			"entry, with descendants (SIGTERM, then SIGKILL after legacyTakeover.forceStopTimeoutMs).\n" +
			"Exits 1 if any of them still runs. Run it right before deploy --ensure-daemon.",
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "release-path", Usage: "accepted for scripts written for the Node original; it changes nothing (see docs/migrating.md)"},
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
	res, err := takeover.Cleanup(c.Context, cfg)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printValue(c, res)
	}
	// stdout is the Node original's summary, line for line, for scripts
	// that read it; the details go to stderr.
	w, e := c.App.Writer, c.App.ErrWriter
	if res.Action == takeover.DaemonActive {
		fmt.Fprintln(w, "Rollbridge daemon already has an active release; no legacy cleanup needed.")
		return nil
	}
	switch res.Action {
	case takeover.DaemonStopped:
		fmt.Fprintf(e, "rollbridgectl: stopped the daemon: %s\n", res.Reason)
		fmt.Fprintln(w, "Stopped existing Rollbridge daemon before deploy.")
	case takeover.DaemonKept:
		fmt.Fprintf(e, "rollbridgectl: kept the daemon: %s\n", res.Reason)
		fmt.Fprintln(w, "Kept the socket-activated Rollbridge daemon; it has no active release.")
	default:
		fmt.Fprintln(w, "No active Rollbridge daemon found.")
	}
	for _, o := range res.RecoveredOrphans {
		fmt.Fprintf(e, "rollbridgectl: stopped orphan %s (pid %d, release %s)\n", o.ID, o.Pid, o.ReleaseID)
	}
	for _, s := range res.Screens {
		fmt.Fprintf(e, "rollbridgectl: quit screen session %s\n", s)
	}
	for _, p := range res.Processes {
		how := "SIGTERM"
		if p.Killed {
			how = "SIGKILL"
		}
		fmt.Fprintf(e, "rollbridgectl: stopped %s: pid %d (%s) with %s\n", p.Name, p.Pid, p.Command, how)
	}
	n := len(res.RecoveredOrphans)
	fmt.Fprintf(w, "Recovered %d Rollbridge orphaned %s.\n", n, plural(n, "process", "processes"))
	n = len(res.Processes)
	fmt.Fprintf(w, "Stopped %d legacy %s.\n", n, plural(n, "process", "processes"))
	return nil
}
