package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"github.com/rollbridge/rollbridge-go/pkg/takeover"
	"github.com/urfave/cli/v2"
)

func recoverCommand() *cli.Command {
	return &cli.Command{
		Name:      "recover",
		Usage:     "list (or with --force stop) processes a crashed daemon left running",
		UsageText: "rollbridgectl recover [-c PATH] [--state-path FILE] [--force] [--json]",
		Description: "Reads statePath and lists the recorded processes that still run (same pid and\n" +
			"start time), and every process carrying the run token (ROLLBRIDGE_RUN) of a daemon\n" +
			"instance the file records: processes that left their group with setsid, or started\n" +
			"after the daemon's last write. Only processes of the state file's owner (and, when\n" +
			"that is root, of the configured process users) count. With --force each one's\n" +
			"process group (or the process alone, when it leads none) gets SIGTERM, then SIGKILL\n" +
			"after proxy.forceStopTimeoutMs, and the state file is removed. If any survives, the\n" +
			"file is kept and the command exits 1. Refuses while a daemon holds the control socket.\n" +
			"The Node original's state file is read too (refused while its daemon still answers\n" +
			"on the control.path the file names): --state-path points at it when switching over.\n" +
			`--json prints {"statePath","orphans":[{"id","pid","releaseId","unrecorded"?}],"stopped":[...],"stillRunning":[...],"stateFileRemoved","dryRun"}.`,
		Flags: []cli.Flag{
			configFlag(),
			&cli.BoolFlag{Name: "force", Usage: "stop the orphans and clear the state file"},
			statePathFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: runRecover,
	}
}

func runRecover(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return configError(err)
	}
	var res *takeover.RecoverResult
	if p := c.String("state-path"); p != "" && !exists(p) {
		// Another daemon's file that is gone (the Node daemon stopped
		// cleanly): nothing to recover, whatever holds this config's socket.
		res = &takeover.RecoverResult{StatePath: p, Orphans: []state.Orphan{}, Stopped: []state.Orphan{}, StillRunning: []state.Orphan{}, DryRun: !c.Bool("force")}
	} else if res, err = takeover.Recover(c.Context, withStatePath(c, cfg), c.Bool("force")); err != nil {
		return err
	}
	if c.Bool("json") {
		if err := printValue(c, res); err != nil {
			return err
		}
		if len(res.StillRunning) > 0 {
			return fmt.Errorf("could not stop %s; left the state file %s in place so you can investigate and re-run recover", orphanCount(len(res.StillRunning)), res.StatePath)
		}
		return nil
	}
	w := c.App.Writer
	if len(res.StillRunning) > 0 {
		w = c.App.ErrWriter // the whole report, so the survivors are not lost in a log of stdout
	}
	renderRecover(w, res)
	if len(res.StillRunning) > 0 {
		return silentFailure
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// statePathFlag lets recover and doctor read another state file than the
// config's: the Node daemon's, while rollbridged has a file of its own.
func statePathFlag() cli.Flag {
	return &cli.StringFlag{Name: "state-path", Usage: "read this state `FILE` instead of the config's statePath (e.g. the Node daemon's)"}
}

// withStatePath applies --state-path to a copy of cfg.
func withStatePath(c *cli.Context, cfg *config.Config) *config.Config {
	p := c.String("state-path")
	if p == "" {
		return cfg
	}
	cp := *cfg
	cp.StatePath = p
	return &cp
}

// renderRecover writes recover's report in the Node original's words, so
// scripts and runbooks written for it read the same.
func renderRecover(w io.Writer, res *takeover.RecoverResult) {
	switch {
	case len(res.Orphans) == 0 && res.DryRun:
		fmt.Fprintln(w, "No orphaned processes found.")
	case len(res.Orphans) == 0:
		fmt.Fprintln(w, "No orphaned processes found; cleared the state file.")
	case res.DryRun:
		fmt.Fprintf(w, "Found %s (run with --force to stop):\n", orphanCount(len(res.Orphans)))
		listOrphans(w, res.Orphans)
		// The original warns that a recycled pid may be listed; here each
		// entry matched its recorded start time too, so say what was checked.
		if res.NodeStateFile {
			fmt.Fprintf(w, "Review the list first; %s is the Node rollbridge daemon's state file, and each one has the pid (and, where recorded, the start time) it names.\n", res.StatePath)
		} else {
			fmt.Fprintln(w, "Review the list first; each one still has the pid and start time the state file recorded.")
		}
	default:
		if len(res.Stopped) > 0 {
			fmt.Fprintf(w, "Stopped %s:\n", orphanCount(len(res.Stopped)))
			listOrphans(w, res.Stopped)
		}
		if len(res.StillRunning) > 0 {
			fmt.Fprintf(w, "Could not stop %s — still running (check permissions/ownership):\n", orphanCount(len(res.StillRunning)))
			listOrphans(w, res.StillRunning)
			fmt.Fprintln(w, "Left the state file in place so you can investigate and re-run recover.")
		}
	}
}

func orphanCount(n int) string {
	return fmt.Sprintf("%d orphaned %s", n, plural(n, "process", "processes"))
}

func listOrphans(w io.Writer, orphans []state.Orphan) {
	for _, o := range orphans {
		extra := ""
		if o.ReleaseID != "" {
			extra = ", release " + o.ReleaseID
		}
		if o.Unrecorded {
			extra += ", not in the state file: found by its run token"
		}
		fmt.Fprintf(w, "  %s (pid %d%s)\n", o.ID, o.Pid, extra)
	}
}
