package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/version"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
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

type legacyStop struct {
	Name    string `json:"name"`
	Pid     int    `json:"pid"`
	Command string `json:"command"`
	Killed  bool   `json:"killed"` // needed SIGKILL
}

type cleanupResult struct {
	Skipped          bool           `json:"skipped"`
	Reason           string         `json:"reason,omitempty"`
	RestartedDaemon  string         `json:"restartedDaemon,omitempty"`
	RecoveredOrphans []state.Orphan `json:"recoveredOrphans"`
	Screens          []string       `json:"screens"`
	Processes        []legacyStop   `json:"processes"`
}

func runPredeployCleanup(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return configError(err)
	}
	res := cleanupResult{RecoveredOrphans: []state.Orphan{}, Screens: []string{}, Processes: []legacyStop{}}
	client := &control.Client{Path: cfg.Control.Path}
	st, err := client.Status(c.Context)
	daemonUp := err == nil
	switch {
	case daemonUp && st.ActiveReleaseID != nil:
		res.Skipped = true
		res.Reason = fmt.Sprintf("the daemon has an active release (%s): nothing to clean up", *st.ActiveReleaseID)
		return printCleanup(c, res)
	case daemonUp && c.String("release-path") != "":
		var why []string
		if st.Proxy.Host != cfg.Proxy.Host || (cfg.Proxy.Port != 0 && st.Proxy.Port != cfg.Proxy.Port) || st.Proxy.UpstreamHost != cfg.Proxy.UpstreamHost {
			why = append(why, fmt.Sprintf("proxy %s:%d (upstream %s) differs from the config's %s (upstream %s)",
				st.Proxy.Host, st.Proxy.Port, st.Proxy.UpstreamHost, cfg.ProxyAddr(), cfg.Proxy.UpstreamHost))
		}
		if st.Daemon.Version != "" && st.Daemon.Version != version.Version {
			why = append(why, fmt.Sprintf("daemon version %s differs from %s", st.Daemon.Version, version.Version))
		}
		if len(why) > 0 {
			if _, err := client.Shutdown(c.Context); err != nil {
				return fmt.Errorf("restart the daemon: %w", err)
			}
			if _, _, err := ensureDaemon(c); err != nil {
				return fmt.Errorf("restart the daemon: %w", err)
			}
			res.RestartedDaemon = strings.Join(why, "; ")
		}
	}
	if !daemonUp && cfg.StatePath != "" {
		rec, err := recoverOrphans(cfg, true, stopGroup)
		if err != nil {
			return err
		}
		res.RecoveredOrphans = rec.Stopped
		if len(rec.StillRunning) > 0 {
			return fmt.Errorf("%d orphaned processes could not be stopped; see rollbridgectl recover", len(rec.StillRunning))
		}
	}
	if lt := cfg.LegacyTakeover; lt != nil {
		for _, name := range lt.Screens {
			if quitScreen(c.Context, name) {
				res.Screens = append(res.Screens, name)
			}
		}
		res.Processes = stopLegacy(lt, config.Ms(lt.ForceStopTimeoutMs))
	}
	return printCleanup(c, res)
}

func printCleanup(c *cli.Context, res cleanupResult) error {
	if c.Bool("json") {
		b, _ := json.Marshal(res) // plain data: cannot fail
		return printJSON(c, b)
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

// quitScreen ends a GNU Screen session; false when there was none.
func quitScreen(ctx context.Context, name string) bool {
	if _, err := exec.LookPath("screen"); err != nil {
		return false
	}
	return exec.CommandContext(ctx, "screen", "-S", name, "-X", "quit").Run() == nil
}

type procInfo struct {
	pid, ppid int
	cmdline   string
}

// listProcs reads every process's parent and command line from /proc.
func listProcs() []procInfo {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			continue
		}
		f := strings.Fields(string(stat[i+2:]))
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		out = append(out, procInfo{pid: pid, ppid: ppid, cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))})
	}
	return out
}

// stopLegacy stops the processes matching the legacy matchers and all their
// descendants. This command and its ancestors are never candidates.
func stopLegacy(lt *config.LegacyTakeover, grace time.Duration) []legacyStop {
	procs := listProcs()
	byPid := map[int]procInfo{}
	children := map[int][]int{}
	for _, p := range procs {
		byPid[p.pid] = p
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	protected := map[int]bool{}
	for pid := os.Getpid(); pid > 1; {
		protected[pid] = true
		p, ok := byPid[pid]
		if !ok {
			break
		}
		pid = p.ppid
	}
	var targets []legacyStop
	seen := map[int]bool{}
	var add func(pid int, name string)
	add = func(pid int, name string) {
		if seen[pid] || protected[pid] {
			return
		}
		seen[pid] = true
		targets = append(targets, legacyStop{Name: name, Pid: pid, Command: byPid[pid].cmdline})
		for _, ch := range children[pid] {
			add(ch, name)
		}
	}
	for _, m := range lt.Processes {
		for _, p := range procs {
			if p.cmdline != "" && containsAll(p.cmdline, m.Includes) {
				add(p.pid, m.Name)
			}
		}
	}
	for _, t := range targets {
		_ = syscall.Kill(t.Pid, syscall.SIGTERM) // gone already is fine
	}
	deadline := time.Now().Add(grace)
	for i := range targets {
		for alive(targets[i].Pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(targets[i].Pid) {
			_ = syscall.Kill(targets[i].Pid, syscall.SIGKILL)
			targets[i].Killed = true
		}
	}
	return targets
}

func alive(pid int) bool { return state.Alive(pid, 0) }

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return len(parts) > 0
}
