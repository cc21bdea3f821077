package doctor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/systemd"
)

// units checks the application's systemd units against the config over
// D-Bus. managed reports whether systemd holds this application's sockets
// (both socket units listening).
func units(ctx context.Context, cfg *config.Config, daemonPath string) (checks []Check, managed bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := systemd.Connect(ctx)
	if err != nil {
		return []Check{fail("systemd", "systemd runs but cannot be reached over D-Bus: %v", err)}, false
	}
	defer m.Close()
	app := cfg.Application
	svc, err := m.Unit(ctx, systemd.ServiceUnit(app))
	if err != nil || !svc.Exists() {
		c := pass("systemd units", "%s is not installed; fine when the daemon runs outside systemd (rollbridgectl systemd units --install sets it up)", systemd.ServiceUnit(app))
		c.Status = Warn
		return []Check{c}, false
	}
	checks = append(checks, dropIns(cfg, daemonPath))
	listening := 0
	sockets := []string{systemd.ProxySocketUnit(app), systemd.ControlSocketUnit(app)}
	if cfg.Metrics != nil {
		sockets = append(sockets, systemd.MetricsSocketUnit(app)) // the service Requires= it
	}
	for _, name := range sockets {
		u, err := m.Unit(ctx, name)
		switch {
		case err != nil || !u.Exists():
			checks = append(checks, fail("socket "+name, "not installed"))
		case u.ActiveState == "active" && u.SubState == "listening" || u.SubState == "running":
			if name != systemd.MetricsSocketUnit(app) {
				listening++ // managed is about the proxy and control sockets
			}
			checks = append(checks, pass("socket "+name, "%s (%s)", u.ActiveState, u.SubState))
		default:
			c := fail("socket "+name, "%s (%s)", u.ActiveState, u.SubState)
			c.Fix = "start it: systemctl enable --now " + name
			checks = append(checks, c)
		}
	}
	switch svc.ActiveState {
	case "active":
		checks = append(checks, pass("service "+svc.Name, "active (%s)", svc.SubState))
	case "failed":
		c := fail("service "+svc.Name, "failed")
		c.Fix = "see journalctl -u " + svc.Name
		checks = append(checks, c)
	default:
		checks = append(checks, pass("service "+svc.Name, "%s (%s): it starts on the first connection to its sockets", svc.ActiveState, svc.SubState))
	}
	if svc.ActiveState != "active" {
		if c, ok := unwatchedUnits(ctx, m, app); ok {
			checks = append(checks, c)
		}
	}
	return checks, listening == 2
}

// unwatchedUnits reports process units (runtime systemd) that run while
// their daemon does not: nobody restarts them, checks their memory or
// routes traffic to them.
func unwatchedUnits(ctx context.Context, m *systemd.Manager, app string) (Check, bool) {
	units, err := m.AppUnits(ctx, app)
	if err != nil {
		return Check{}, false
	}
	var live []string
	for _, u := range units {
		if u.ActiveState == "active" || u.ActiveState == "activating" || u.ActiveState == "deactivating" {
			live = append(live, u.Name)
		}
	}
	if len(live) == 0 {
		return Check{}, false
	}
	c := fail("process units", "%d process unit(s) of %s run with no daemon watching them: %s", len(live), app, strings.Join(live, ", "))
	c.Fix = "start the daemon to adopt them (systemctl start " + systemd.ServiceUnit(app) + "), or stop them (systemctl stop " + systemd.ServiceUnit(app) + ")"
	return c, true
}

// dropIns compares the installed drop-ins with the ones the config gives.
func dropIns(cfg *config.Config, daemonPath string) Check {
	const name = "systemd drop-ins"
	want, err := systemd.DropIns(cfg, daemonPath)
	if err != nil {
		return fail(name, "%v", err)
	}
	var stale []string
	for _, f := range want {
		got, err := os.ReadFile(filepath.Join("/etc/systemd/system", f.Path))
		if err != nil || !sameDirectives(string(got), f.Content) {
			stale = append(stale, f.Path)
		}
	}
	if len(stale) > 0 {
		c := fail(name, "out of date with the config: %s", strings.Join(stale, ", "))
		c.Fix = "run rollbridgectl systemd units --install"
		return c
	}
	return pass(name, "match the config")
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
