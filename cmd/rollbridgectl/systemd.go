package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/systemd"
	"github.com/rollbridge/rollbridge-go/pkg/takeover"
	"github.com/urfave/cli/v2"
)

func systemdCommand() *cli.Command {
	return &cli.Command{
		Name:  "systemd",
		Usage: "systemd integration helpers",
		Subcommands: []*cli.Command{{
			Name:      "units",
			Usage:     "print (or install) the per-app unit drop-ins derived from the config",
			UsageText: "rollbridgectl systemd units [-c PATH] [--install] [--unit-dir DIR] [--rollbridged PATH]",
			Description: "Prints drop-ins for rollbridge-proxy@APP.socket (ListenStream from proxy.host/port),\n" +
				"rollbridge-control@APP.socket (control.path, SocketMode/User/Group from control.mode/\n" +
				"owner/group), rollbridge@APP.service (ExecStart with this config, TimeoutStopSec\n" +
				"sized to the drain and the slowest stop sequence) and, when the config has metrics,\n" +
				"rollbridge-metrics@APP.socket (ListenStream from metrics.host/port, added to the\n" +
				"service's Sockets=). With --install they are written\n" +
				"under --unit-dir, the template units are installed there if systemd does not know them\n" +
				"yet, and systemd re-reads its units over D-Bus.",
			Flags: []cli.Flag{
				configFlag(),
				&cli.BoolFlag{Name: "install", Usage: "write the files and reload systemd"},
				&cli.StringFlag{Name: "unit-dir", Value: "/etc/systemd/system", Usage: "unit directory to write to"},
				&cli.StringFlag{Name: "rollbridged", Usage: "daemon binary for ExecStart (default: next to rollbridgectl, else on PATH)"},
				&cli.BoolFlag{Name: "no-reload", Usage: "with --install: do not ask systemd to reload"},
			},
			Action: runSystemdUnits,
		}},
	}
}

func runSystemdUnits(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return configError(err)
	}
	daemon := c.String("rollbridged")
	if daemon == "" {
		daemon = takeover.FindDaemon()
	}
	dir := c.String("unit-dir")
	if !c.Bool("install") {
		files, err := systemd.DropIns(cfg, daemon)
		if err != nil {
			return err
		}
		for _, f := range files {
			fmt.Fprintf(c.App.Writer, "# %s\n%s\n", filepath.Join(dir, f.Path), f.Content)
		}
		return nil
	}
	done, err := systemd.Install(cfg, dir, daemon)
	for _, p := range done.Templates {
		fmt.Fprintln(c.App.Writer, "installed", p)
	}
	for _, p := range done.DropIns {
		fmt.Fprintln(c.App.Writer, "wrote", p)
	}
	if err != nil || c.Bool("no-reload") {
		return err
	}
	if !systemd.Booted() {
		fmt.Fprintln(c.App.ErrWriter, "rollbridgectl: systemd is not running here; skipped the daemon-reload")
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	if err := systemd.Reload(ctx); err != nil {
		return err
	}
	sockets := systemd.ProxySocketUnit(cfg.Application) + " " + systemd.ControlSocketUnit(cfg.Application)
	if cfg.Metrics != nil {
		sockets += " " + systemd.MetricsSocketUnit(cfg.Application)
	}
	fmt.Fprintf(c.App.Writer, "systemd reloaded; start with: systemctl enable --now %s\n", sockets)
	return nil
}
