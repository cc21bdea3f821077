package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"github.com/rollbridge/rollbridge-go/pkg/systemd"
	"github.com/urfave/cli/v2"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "check the config and the environment before starting a daemon or deploying",
		UsageText: "rollbridgectl doctor [-c PATH] [--release-path DIR [--release-id ID] [--revision SHA]] [--json]",
		Description: "Checks: the config is valid; the control socket is free (no daemon or other program\n" +
			"holds it); its directory is writable; the proxy port can be bound; with statePath, its\n" +
			"directory is writable and no orphaned processes run. On a systemd machine: the units\n" +
			"and drop-ins match the config, the sockets listen, the service runs. With\n" +
			"--release-path: the release directory exists, every template renders, every rendered\n" +
			"working directory exists. One line per check; exit 1 if any fails.\n" +
			`--json prints {"checks":[{"name","ok","detail"}],"ok"}.`,
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "release-path", Usage: "pre-flight this prepared release `DIR`"},
			&cli.StringFlag{Name: "release-id", Usage: "release id for rendering (default: --revision, else the directory name)"},
			&cli.StringFlag{Name: "revision", Usage: "revision for rendering (default: the release id)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: runDoctor,
	}
}

type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func runDoctor(c *cli.Context) error {
	var checks []check
	add := func(name string, ok bool, format string, args ...any) {
		checks = append(checks, check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	cfg, err := loadConfig(c)
	if err != nil {
		add("config", false, "%v", configError(err))
	} else {
		add("config", true, "valid: %d %s, proxy on %s", len(cfg.Processes), plural(len(cfg.Processes), "process", "processes"), cfg.ProxyAddr())
		// Under systemd the sockets belong to socket units: a held port or a
		// running daemon is then the normal state, not a conflict.
		var sysChecks []check
		managed := false
		if systemd.Booted() {
			managed = doctorSystemd(c.Context, cfg, func(name string, ok bool, format string, args ...any) {
				sysChecks = append(sysChecks, check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
			})
		}
		doctorEnvironment(c.Context, cfg, managed, add)
		if rp := c.String("release-path"); rp != "" {
			doctorRelease(cfg, rp, c.String("release-id"), c.String("revision"), add)
		}
		checks = append(checks, sysChecks...)
	}
	ok := true
	for _, ch := range checks {
		ok = ok && ch.OK
	}
	if c.Bool("json") {
		b, _ := json.Marshal(map[string]any{"checks": checks, "ok": ok}) // plain data: cannot fail
		if err := printJSON(c, b); err != nil {
			return err
		}
	} else {
		failed := 0
		for _, ch := range checks {
			mark := "✓"
			if !ch.OK {
				mark = "✗"
				failed++
			}
			fmt.Fprintf(c.App.Writer, "%s %s: %s\n", mark, ch.Name, ch.Detail)
		}
		if ok {
			fmt.Fprintln(c.App.Writer, "\nAll checks passed.")
		} else {
			fmt.Fprintf(c.App.Writer, "\n%d %s failed.\n", failed, plural(failed, "check", "checks"))
		}
	}
	if !ok {
		return silentFailure
	}
	return nil
}

type addFunc func(name string, ok bool, format string, args ...any)

func doctorEnvironment(ctx context.Context, cfg *config.Config, managed bool, add addFunc) {
	sock := cfg.Control.Path
	switch {
	case managed:
		add("control socket", true, "%s belongs to %s (systemd passes it to the daemon)", sock, systemd.ControlSocketUnit(cfg.Application))
	case !daemonHoldsSocket(sock):
		if _, err := os.Stat(sock); err == nil {
			add("control socket", true, "no daemon running; a stale socket file at %s will be removed when the daemon starts", sock)
		} else {
			add("control socket", true, "no daemon running; %s is free to bind", sock)
		}
	default:
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := (&control.Client{Path: sock}).Status(qctx)
		cancel()
		if err == nil {
			active := "none"
			if st.ActiveReleaseID != nil {
				active = *st.ActiveReleaseID
			}
			add("control socket", false, "a rollbridge daemon for %q already runs on %s (active release: %s); a second one could not start", st.Application, sock, active)
		} else {
			add("control socket", false, "%s is held by another program", sock)
		}
	}
	dirCheck(add, "control socket directory", filepath.Dir(sock))
	ln, err := net.Listen("tcp", cfg.ProxyAddr())
	switch {
	case managed:
		if err == nil {
			_ = ln.Close() // probe only
		}
		add("proxy port", true, "%s belongs to %s (systemd passes it to the daemon)", cfg.ProxyAddr(), systemd.ProxySocketUnit(cfg.Application))
	case err == nil:
		_ = ln.Close() // probe only
		add("proxy port", true, "%s is available", cfg.ProxyAddr())
	case errors.Is(err, syscall.EADDRINUSE):
		add("proxy port", false, "%s is already in use (ss -ltnp 'sport = :%d' shows by whom)", cfg.ProxyAddr(), cfg.Proxy.Port)
	default:
		add("proxy port", false, "%s cannot be bound: %v", cfg.ProxyAddr(), err)
	}
	if cfg.StatePath == "" {
		return
	}
	dirCheck(add, "state directory", filepath.Dir(cfg.StatePath))
	snap, err := state.Load(cfg.StatePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		add("orphans", true, "no state file at %s: nothing left behind", cfg.StatePath)
	case err != nil:
		add("orphans", false, "%v", err)
	default:
		if daemonHoldsSocket(sock) {
			add("orphans", true, "the state file belongs to the running daemon")
			return
		}
		orphans := snap.Orphans()
		if len(orphans) == 0 {
			add("orphans", true, "no process of a previous daemon is still running")
			return
		}
		var list []string
		for _, o := range orphans {
			list = append(list, fmt.Sprintf("%s (pid %d, release %s)", o.ID, o.Pid, o.ReleaseID))
		}
		add("orphans", false, "still running from a previous daemon: %s; check them (a pid may have been reused), then rollbridgectl recover --force", strings.Join(list, ", "))
	}
}

// dirCheck proves a directory writable by creating and removing a file.
func dirCheck(add addFunc, name, dir string) {
	f, err := os.CreateTemp(dir, ".rollbridge-doctor-*")
	if err != nil {
		add(name, false, "%s is not writable: %v", dir, err)
		return
	}
	_ = f.Close()
	_ = os.Remove(f.Name()) // our own probe file
	add(name, true, "%s is writable", dir)
}

// doctorRelease renders every template against a prepared release, with
// the low end of each port range, replica 0 and this environment.
func doctorRelease(cfg *config.Config, path, id, revision string, add addFunc) {
	abs, _ := filepath.Abs(path)
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		add("release path", false, "%s does not exist or is not a directory", abs)
		return
	}
	add("release path", true, "%s exists", abs)
	if id == "" {
		id = revision
	}
	if id == "" {
		id = filepath.Base(abs)
	}
	ports := map[string]int{}
	for _, p := range cfg.Processes {
		if p.Port != nil {
			ports[p.ID] = p.Port.From
		}
	}
	env := config.EnvMap(os.Environ())
	var problems, missing []string
	for _, p := range cfg.Processes {
		r, err := p.Render(config.Vars{ReleasePath: abs, ReleaseID: id, Revision: revision, Application: cfg.Application,
			ProcessID: p.ID, ReplicaCount: p.Replicas, Port: ports[p.ID], Ports: ports,
			ProxyHost: cfg.Proxy.Host, ProxyPort: cfg.Proxy.Port, UpstreamHost: cfg.Proxy.UpstreamHost, Env: env})
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if st, err := os.Stat(r.Cwd); err != nil || !st.IsDir() {
			missing = append(missing, fmt.Sprintf("%s: %s", p.ID, r.Cwd))
		}
	}
	if len(problems) > 0 {
		add("process templates", false, "%s", strings.Join(problems, "; "))
	} else {
		add("process templates", true, "every command, cwd and env template of %d processes renders", len(cfg.Processes))
	}
	if len(missing) > 0 {
		add("process working directories", false, "missing: %s", strings.Join(missing, ", "))
	} else if len(problems) == 0 {
		add("process working directories", true, "every rendered cwd exists")
	}
}

// doctorSystemd checks the units against the config over D-Bus. It
// reports whether systemd manages this application's sockets (both socket
// units active).
func doctorSystemd(ctx context.Context, cfg *config.Config, add addFunc) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := systemd.Connect(ctx)
	if err != nil {
		add("systemd", false, "systemd runs but cannot be reached over D-Bus: %v", err)
		return false
	}
	defer m.Close()
	app := cfg.Application
	svc, err := m.Unit(ctx, systemd.ServiceUnit(app))
	if err != nil || !svc.Exists() {
		add("systemd units", true, "%s is not installed; fine when the daemon runs outside systemd (rollbridgectl systemd units --install sets it up)", systemd.ServiceUnit(app))
		return false
	}
	want, err := systemd.DropIns(cfg, findRollbridged())
	if err != nil {
		add("systemd drop-ins", false, "%v", err)
	} else {
		var stale []string
		for _, f := range want {
			got, err := os.ReadFile(filepath.Join("/etc/systemd/system", f.Path))
			if err != nil || !sameDirectives(string(got), f.Content) {
				stale = append(stale, f.Path)
			}
		}
		if len(stale) > 0 {
			add("systemd drop-ins", false, "out of date with the config: %s; run rollbridgectl systemd units --install", strings.Join(stale, ", "))
		} else {
			add("systemd drop-ins", true, "match the config")
		}
	}
	listening := 0
	for _, name := range []string{systemd.ProxySocketUnit(app), systemd.ControlSocketUnit(app)} {
		u, err := m.Unit(ctx, name)
		switch {
		case err != nil || !u.Exists():
			add("socket "+name, false, "not installed")
		case u.ActiveState == "active" && u.SubState == "listening" || u.SubState == "running":
			listening++
			add("socket "+name, true, "%s (%s)", u.ActiveState, u.SubState)
		default:
			add("socket "+name, false, "%s (%s); start it: systemctl enable --now %s", u.ActiveState, u.SubState, name)
		}
	}
	switch {
	case svc.ActiveState == "active":
		add("service "+svc.Name, true, "active (%s)", svc.SubState)
	case svc.ActiveState == "failed":
		add("service "+svc.Name, false, "failed; see journalctl -u %s", svc.Name)
	default:
		add("service "+svc.Name, true, "%s (%s): it starts on the first connection to its sockets", svc.ActiveState, svc.SubState)
	}
	return listening == 2
}

// sameDirectives compares unit files by their directives, ignoring comments
// (they name the config path, which may be spelled differently).
func sameDirectives(a, b string) bool {
	strip := func(s string) string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	return strip(a) == strip(b)
}
