package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	units "github.com/rollbridge/rollbridge-go/packaging/systemd"
	"github.com/rollbridge/rollbridge-go/pkg/systemd"
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
				"owner/group) and rollbridge@APP.service (ExecStart with this config, TimeoutStopSec\n" +
				"sized to the drain and the slowest stop sequence). With --install they are written\n" +
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
	daemonPath := c.String("rollbridged")
	if daemonPath == "" {
		daemonPath = findRollbridged()
	}
	files, err := systemd.DropIns(cfg, daemonPath)
	if err != nil {
		return err
	}
	dir := c.String("unit-dir")
	if !c.Bool("install") {
		for _, f := range files {
			fmt.Fprintf(c.App.Writer, "# %s\n%s\n", filepath.Join(dir, f.Path), f.Content)
		}
		return nil
	}
	templates, err := fs.ReadDir(units.Files, ".")
	if err != nil {
		return err
	}
	for _, t := range templates {
		name := t.Name()
		target := filepath.Join(dir, name)
		if name == "rollbridge.tmpfiles.conf" && dir == "/etc/systemd/system" {
			target = "/etc/tmpfiles.d/rollbridge.conf"
		}
		if knownUnit(dir, name) || fileExists(target) {
			continue
		}
		data, _ := units.Files.ReadFile(name) // embedded: cannot fail
		if err := writeFile(target, data); err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, "installed", target)
	}
	for _, f := range files {
		target := filepath.Join(dir, f.Path)
		if err := writeFile(target, []byte(f.Content)); err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, "wrote", target)
	}
	if c.Bool("no-reload") {
		return nil
	}
	if !systemd.Booted() {
		fmt.Fprintln(c.App.ErrWriter, "rollbridgectl: systemd is not running here; skipped the daemon-reload")
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	m, err := systemd.Connect(ctx)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Reload(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "systemd reloaded; start with: systemctl enable --now %s %s\n",
		systemd.ProxySocketUnit(cfg.Application), systemd.ControlSocketUnit(cfg.Application))
	return nil
}

// knownUnit reports whether a template unit is already installed where
// systemd looks (the target directory or the distribution's unit dirs).
func knownUnit(dir, name string) bool {
	for _, d := range []string{dir, "/lib/systemd/system", "/usr/lib/systemd/system"} {
		if fileExists(filepath.Join(d, name)) {
			return true
		}
	}
	return false
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// findRollbridged locates the daemon: next to this binary, else on PATH.
func findRollbridged() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "rollbridged")
		if fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("rollbridged"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return "/usr/local/bin/rollbridged"
}
