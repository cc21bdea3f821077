package pgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// spawn starts script in its own process group and returns it as a target.
func spawn(t *testing.T, script string) Target {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	testutil.StartGroup(t, cmd) // reaps it: a zombie would count as gone anyway
	st, err := procfs.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(script, "trap '' TERM") {
		// A SIGTERM sent before the shell ran its trap would end it, and
		// a stubborn process would look polite.
		testutil.Eventually(t, "the TERM trap set", func() bool { return ignoresTERM(cmd.Process.Pid) })
	}
	return Target{Pid: cmd.Process.Pid, StartTime: st.StartTime, Group: true}
}

// ignoresTERM reads the SigIgn mask of pid from /proc.
func ignoresTERM(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && mask&(1<<(uint(syscall.SIGTERM)-1)) != 0
		}
	}
	return false
}

// members lists the live processes of group pgid other than its leader.
func members(t *testing.T, pgid int) []int {
	t.Helper()
	pids, err := procfs.AllPids()
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, pid := range pids {
		if st, err := procfs.ReadStat(pid); err == nil && st.Pgrp == pgid && pid != pgid && st.Live() {
			out = append(out, pid)
		}
	}
	return out
}

func TestStop(t *testing.T) {
	polite := spawn(t, "exec sleep 300")
	stubborn := spawn(t, "trap '' TERM; while :; do sleep 0.05; done")
	stubborn.Group = false
	// The leader obeys SIGTERM; a member of its group ignores it.
	group := spawn(t, "sh -c 'trap \"\" TERM; while :; do sleep 0.05; done' & exec sleep 300")
	testutil.Eventually(t, "the group's member", func() bool { return len(members(t, group.Pid)) > 0 })
	member := members(t, group.Pid)
	// A pid found with another start time is someone else's now.
	other := spawn(t, "exec sleep 300")
	reused := Target{Pid: other.Pid, StartTime: other.StartTime + 1, Group: true}
	gone := Target{Pid: 1 << 30, StartTime: 1}

	res := Stop(context.Background(), []Target{polite, stubborn, group, reused, gone}, 300*time.Millisecond)
	want := []struct {
		name         string
		killed, gone bool
	}{{"polite", false, true}, {"stubborn", true, true}, {"group", true, true}, {"reused", false, true}, {"gone", false, true}}
	for i, w := range want {
		if res[i].Killed != w.killed || res[i].Gone != w.gone || res[i].Target != []Target{polite, stubborn, group, reused, gone}[i] {
			t.Errorf("%s: got %+v, want killed %v gone %v", w.name, res[i], w.killed, w.gone)
		}
	}
	for _, pid := range append(member, polite.Pid, stubborn.Pid, group.Pid) {
		if procfs.Alive(pid, 0) {
			t.Errorf("pid %d still alive", pid)
		}
	}
	if !procfs.Alive(other.Pid, other.StartTime) {
		t.Error("a process that only shares a recorded pid was stopped")
	}
}

func TestStopEndsWithContext(t *testing.T) {
	stubborn := spawn(t, "trap '' TERM; while :; do sleep 0.05; done")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := Stop(ctx, []Target{stubborn}, time.Hour)
	// No wait for the hour: SIGKILL followed at once, and it landed.
	if !res[0].Killed {
		t.Errorf("got %+v", res[0])
	}
	testutil.Eventually(t, "the process gone", func() bool { return !procfs.Alive(stubborn.Pid, stubborn.StartTime) })
}
