package takeover

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/rollbridge/rollbridge-go/internal/pgroup"
	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/pkg/config"
)

// LegacyStop is one process Cleanup stopped for a legacyTakeover matcher.
type LegacyStop struct {
	Name    string `json:"name"` // the processes entry's name, or "screen NAME"
	Pid     int    `json:"pid"`
	Command string `json:"command"`
	Killed  bool   `json:"killed"` // needed SIGKILL
}

// quitScreen ends a GNU Screen session; false when there was none (or no
// screen binary).
func quitScreen(ctx context.Context, name string) bool {
	if _, err := exec.LookPath("screen"); err != nil {
		return false
	}
	return exec.CommandContext(ctx, "screen", "-S", name, "-X", "quit").Run() == nil
}

// hostProc is one live process of the host, as the legacy matchers see it.
type hostProc struct {
	stat    procfs.Stat
	cmdline string // argv joined by spaces; "" for kernel threads
}

// scanHost reads every live process of the host.
func scanHost() ([]hostProc, error) {
	pids, err := procfs.AllPids()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	out := make([]hostProc, 0, len(pids))
	for _, pid := range pids {
		st, err := procfs.ReadStat(pid)
		if err != nil || !st.Live() {
			continue // gone meanwhile, or a zombie: nothing to stop
		}
		out = append(out, hostProc{stat: st, cmdline: procfs.Cmdline(pid, "")})
	}
	return out, nil
}

// legacyMatch returns the legacyTakeover entry a command line belongs to:
// "screen NAME" for a GNU Screen session started as `screen -dmS NAME`
// (its server process's command line is `SCREEN -dmS NAME ...`), a
// processes entry's name when the line contains all its includes, or "".
// The session name is compared as a whole word, so the session "shop"
// does not claim "shop2".
func legacyMatch(lt config.LegacyTakeover, cmdline string) string {
	if cmdline == "" {
		return "" // a kernel thread
	}
	f := strings.Fields(cmdline)
	for i := 0; i+2 < len(f); i++ {
		if (f[i] == "SCREEN" || strings.HasSuffix(f[i], "/SCREEN")) && f[i+1] == "-dmS" {
			for _, name := range lt.Screens {
				if f[i+2] == name {
					return "screen " + name
				}
			}
		}
	}
	for _, m := range lt.Processes {
		if containsAll(cmdline, m.Includes) {
			return m.Name
		}
	}
	return ""
}

// findLegacy lists every process of the host that belongs to lt — the
// seeds legacyMatch names and all their descendants — in the order found.
// This process and its ancestors are never listed, so a deploy script
// whose own command line matches does not stop itself.
func findLegacy(lt config.LegacyTakeover) ([]LegacyStop, []pgroup.Target, error) {
	procs, err := scanHost()
	if err != nil {
		return nil, nil, err
	}
	byPid := map[int]hostProc{}
	children := map[int][]int{}
	for _, p := range procs {
		byPid[p.stat.Pid] = p
		children[p.stat.Ppid] = append(children[p.stat.Ppid], p.stat.Pid)
	}
	protected := map[int]bool{}
	for pid := os.Getpid(); pid > 1; {
		protected[pid] = true
		p, ok := byPid[pid]
		if !ok {
			break
		}
		pid = p.stat.Ppid
	}
	var found []LegacyStop
	var targets []pgroup.Target
	seen := map[int]bool{}
	var add func(pid int, name string)
	add = func(pid int, name string) {
		if seen[pid] || protected[pid] {
			return
		}
		seen[pid] = true
		p := byPid[pid]
		found = append(found, LegacyStop{Name: name, Pid: pid, Command: p.cmdline})
		targets = append(targets, pgroup.Target{Pid: pid, StartTime: p.stat.StartTime})
		for _, ch := range children[pid] {
			add(ch, name)
		}
	}
	for _, p := range procs {
		if name := legacyMatch(lt, p.cmdline); name != "" {
			add(p.stat.Pid, name)
		}
	}
	return found, targets, nil
}

// stopLegacy stops what findLegacy finds: SIGTERM, then SIGKILL after
// lt.forceStopTimeoutMs. It then looks again: whatever still belongs to lt
// (a process it may not signal, or one started meanwhile by something the
// matchers do not cover) is a *LegacySurvivorsError.
func stopLegacy(ctx context.Context, lt config.LegacyTakeover) ([]LegacyStop, error) {
	stops, targets, err := findLegacy(lt)
	if err != nil {
		return nil, err
	}
	for i, r := range pgroup.Stop(ctx, targets, lt.ForceStopTimeout()) {
		stops[i].Killed = r.Killed
	}
	left, _, err := findLegacy(lt)
	if err != nil {
		return nil, err
	}
	if len(left) > 0 {
		return nil, &LegacySurvivorsError{Survivors: left}
	}
	if stops == nil {
		stops = []LegacyStop{}
	}
	return stops, nil
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return len(parts) > 0
}
