package takeover

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/pgroup"
	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/pkg/config"
)

// LegacyStop is one process Cleanup stopped for a legacyTakeover matcher.
type LegacyStop struct {
	Name    string `json:"name"` // the matcher's name
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

// stopLegacy stops every process whose command line contains all strings of
// a matcher, with all its descendants: SIGTERM, then SIGKILL after grace.
// This process and its ancestors are never candidates, so a deploy script
// whose own command line matches does not stop itself.
func stopLegacy(ctx context.Context, matchers []config.LegacyProcess, grace time.Duration) ([]LegacyStop, error) {
	procs, err := scanHost()
	if err != nil {
		return nil, err
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
	var stops []LegacyStop
	var targets []pgroup.Target
	seen := map[int]bool{}
	var add func(pid int, name string)
	add = func(pid int, name string) {
		if seen[pid] || protected[pid] {
			return
		}
		seen[pid] = true
		p := byPid[pid]
		stops = append(stops, LegacyStop{Name: name, Pid: pid, Command: p.cmdline})
		targets = append(targets, pgroup.Target{Pid: pid, StartTime: p.stat.StartTime})
		for _, ch := range children[pid] {
			add(ch, name)
		}
	}
	for _, m := range matchers {
		for _, p := range procs {
			if p.cmdline != "" && containsAll(p.cmdline, m.Includes) {
				add(p.stat.Pid, m.Name)
			}
		}
	}
	for i, r := range pgroup.Stop(ctx, targets, grace) {
		stops[i].Killed = r.Killed
	}
	return stops, nil // nil when nothing matched: --json has always printed null then
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return len(parts) > 0
}
