package main

import (
	"fmt"
	"os"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/doctor"
	"github.com/rollbridge/rollbridge-go/pkg/takeover"
	"github.com/urfave/cli/v2"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "check the config and the environment before starting a daemon or deploying",
		UsageText: "rollbridgectl doctor [-c PATH] [--state-path FILE] [--release-path DIR [--release-id ID] [--revision SHA]] [--json]",
		Description: "Checks: the config is valid; the control socket is free (no daemon or other program\n" +
			"holds it); its directory is writable; the proxy port can be bound; with statePath, its\n" +
			"directory is writable and no orphaned processes run (the Node original's state file\n" +
			"is read too; --state-path reads another file). On a systemd machine: the units\n" +
			"and drop-ins match the config, the sockets listen, the service runs. With\n" +
			"--release-path: the release directory exists, every template renders, every rendered\n" +
			"working directory exists. One line per check on stdout; if any fails, \"N checks failed.\"\n" +
			"on stderr and exit 1.\n" +
			`--json prints {"checks":[{"name","ok","detail"}],"ok"}.`,
		Flags: []cli.Flag{
			configFlag(),
			statePathFlag(),
			&cli.StringFlag{Name: "release-path", Usage: "pre-flight this prepared release `DIR`"},
			&cli.StringFlag{Name: "release-id", Usage: "release id for rendering (default: --revision, else the directory name)"},
			&cli.StringFlag{Name: "revision", Usage: "revision for rendering (default: the release id)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: runDoctor,
	}
}

// checkJSON is one check in doctor --json; a warning is not a failure.
type checkJSON struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func runDoctor(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if cfg != nil {
		cfg = withStatePath(c, cfg)
	}
	o := doctor.Options{Config: cfg, Env: config.EnvMap(os.Environ()), DaemonPath: takeover.FindDaemon()}
	if err != nil {
		o.Config, o.ConfigErr = nil, configError(err)
	}
	if rp := c.String("release-path"); rp != "" {
		o.Release = &doctor.Release{Path: rp, ID: c.String("release-id"), Revision: c.String("revision")}
	}
	checks := doctor.Run(c.Context, o)
	failed := 0
	out := make([]checkJSON, len(checks))
	for i, ch := range checks {
		out[i] = checkJSON{Name: ch.Name, OK: ch.Status != doctor.Fail, Detail: ch.Detail()}
		if !out[i].OK {
			failed++
		}
	}
	if c.Bool("json") {
		if err := printValue(c, struct {
			Checks []checkJSON `json:"checks"`
			OK     bool        `json:"ok"`
		}{out, failed == 0}); err != nil {
			return err
		}
	} else {
		for _, ch := range out {
			mark := "✓"
			if !ch.OK {
				mark = "✗"
			}
			fmt.Fprintf(c.App.Writer, "%s %s: %s\n", mark, ch.Name, ch.Detail)
		}
		if failed == 0 {
			fmt.Fprintln(c.App.Writer, "\nAll checks passed.")
		} else {
			// The checks on stdout, the verdict on stderr, as in the Node original.
			fmt.Fprintf(c.App.ErrWriter, "\n%d %s failed.\n", failed, plural(failed, "check", "checks"))
		}
	}
	if failed > 0 {
		return silentFailure
	}
	return nil
}
