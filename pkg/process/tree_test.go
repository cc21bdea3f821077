package process

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// treeSpec runs script as the managed command, with memory supervision so
// Status carries rssBytes and children.
func treeSpec(t *testing.T, id, script string) Spec {
	t.Helper()
	spec := childSpec(t, id, "unused")
	spec.Command = script
	spec.Memory = &MemoryPolicy{LimitBytes: 1 << 40, CheckInterval: 20 * time.Millisecond}
	return spec
}

// pidsByCommand maps each member's command line to its pid.
func pidsByCommand(members []Member) map[string]int {
	out := map[string]int{}
	for _, m := range members {
		out[m.Command] = m.Pid
	}
	return out
}

// killOnCleanup kills pid at the end of the test: a process that called
// setsid is outside the group that Stop signals.
//
// The start time is taken now and checked then: by the end of the test the
// process is normally gone and its pid may belong to anything on the host
// (another test binary, say), which must not be killed.
func killOnCleanup(t *testing.T, pid int) {
	start, err := procfs.StartTime(pid)
	if err != nil {
		return // already gone
	}
	t.Cleanup(func() {
		if procfs.Alive(pid, start) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func TestMembersIncludeGrandchildrenAndSetsid(t *testing.T) {
	t.Parallel()
	// The leader shell starts a subshell that runs `sleep 600` as its own
	// child (the grandchild), and `sleep 601` after setsid(2), which puts it
	// in a session and process group of its own.
	h := newHarness(t, treeSpec(t, "tree", `(sleep 600; :) & setsid sleep 601 & echo ready; wait`))
	leader := h.start()
	h.waitLine("ready")
	var st Status
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last sample: %+v", st.Children)
		}
	})
	testutil.Eventually(t, "four members sampled, each with its memory", func() bool {
		st = h.p.Status()
		byCmd := pidsByCommand(st.Children)
		for _, m := range st.Children {
			if m.RSSBytes == 0 {
				return false // caught in the middle of an exec: look again
			}
		}
		return len(st.Children) == 4 && byCmd["sleep 600"] != 0 && byCmd["sleep 601"] != 0
	})
	byCmd := pidsByCommand(st.Children)
	grandchild, setsid := byCmd["sleep 600"], byCmd["sleep 601"]
	killOnCleanup(t, setsid)
	gs, err := procfs.ReadStat(grandchild)
	if err != nil || gs.Ppid == leader {
		t.Errorf("sleep 600 (pid %d, parent %d, %v) should be a grandchild of the leader %d", grandchild, gs.Ppid, err, leader)
	}
	ss, err := procfs.ReadStat(setsid)
	if err != nil || ss.Session != setsid || ss.Pgrp == leader {
		t.Errorf("sleep 601: session %d, group %d (%v); want a session of its own, outside group %d", ss.Session, ss.Pgrp, err, leader)
	}
	var sum uint64
	for _, m := range st.Children {
		sum += m.RSSBytes
	}
	if sum != st.RSSBytes {
		t.Errorf("rssBytes %d, want the sum over the members %d", st.RSSBytes, sum)
	}
}

func TestMembersIncludeAdoptedOrphans(t *testing.T) {
	t.Parallel()
	// `(sleep 602 &)` leaves sleep 602 behind when the subshell exits: its
	// parent is gone, so the kernel hands it to the nearest subreaper — this
	// test binary, as it would be the daemon.
	h := newHarness(t, treeSpec(t, "orphan", `(sleep 602 &); (sleep 0.05 &); echo ready; exec sleep 603`))
	leader := h.start()
	h.waitLine("ready")
	var st Status
	testutil.Eventually(t, "the orphan sampled", func() bool {
		st = h.p.Status()
		return pidsByCommand(st.Children)["sleep 602"] != 0
	})
	orphan := pidsByCommand(st.Children)["sleep 602"]
	ost, err := procfs.ReadStat(orphan)
	if err != nil || ost.Ppid != syscall.Getpid() || ost.Pgrp != leader {
		t.Errorf("sleep 602: parent %d, group %d (%v); want adopted by %d and in group %d", ost.Ppid, ost.Pgrp, err, syscall.Getpid(), leader)
	}
	// The short-lived orphan (sleep 0.05) was adopted too; once it exits the
	// reaper collects it, so no zombie of the group waits under us.
	testutil.Eventually(t, "the exited orphan reaped", func() bool { return len(zombieChildrenIn(t, leader)) == 0 })
}

// zombieChildrenIn lists this process's exited-but-unreaped children that
// are in process group pgid.
func zombieChildrenIn(t *testing.T, pgid int) []int {
	t.Helper()
	kids, err := procfs.Children(syscall.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, k := range kids {
		if st, err := procfs.ReadStat(k); err == nil && !st.Live() && st.Pgrp == pgid {
			out = append(out, k)
		}
	}
	return out
}

// threadReads returns how many read system calls the calling OS thread has
// made (syscr in /proc/thread-self/io). The caller must hold its thread.
func threadReads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "syscr: "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no syscr in /proc/thread-self/io: %q", b)
	return 0
}

// TestMembersReadOnlyTheTree starts many processes outside the managed
// tree and checks that finding the members does not read them: the read
// system calls one look makes stay far below the number of host processes.
// A scan of /proc (the old way) reads at least one file per process.
func TestMembersReadOnlyTheTree(t *testing.T) {
	const hostProcs = 400
	host := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt "+strconv.Itoa(hostProcs)+" ]; do sleep 600 & i=$((i+1)); done; echo started; wait")
	host.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-host.Process.Pid, syscall.SIGKILL)
		_ = host.Wait() // killed on purpose
	})
	buf := make([]byte, 16)
	if n, err := out.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "started") {
		t.Fatalf("host processes did not start: %q %v", buf[:n], err)
	}

	h := newHarness(t, treeSpec(t, "small", `(sleep 604; :) & echo ready; wait`))
	h.start()
	h.waitLine("ready")
	testutil.Eventually(t, "three members", func() bool { return len(h.p.Status().Children) == 3 })
	h.p.mu.Lock()
	handle := h.p.cur.h
	h.p.mu.Unlock()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadReads(t)
	members := handle.Members()
	reads := threadReads(t) - before - 1 // the second read of the io file itself
	if len(members) != 3 {
		t.Fatalf("members %+v, want 3", members)
	}
	if reads >= hostProcs/4 {
		t.Errorf("one look at 3 members made %d reads with %d other processes on the host: it reads outside the tree", reads, hostProcs)
	}
	t.Logf("one look at 3 members: %d read system calls (%d other processes on the host)", reads, hostProcs)
}

// TestStopReachesProcessesThatLeftTheGroup starts a run whose shell leaves
// two processes outside its process group — one after setsid that stays
// its child, one that double-forks into a new session and is orphaned at
// once — and checks that Stop ends both: a supervisor must not leak a
// process per deploy because an app daemonizes.
func TestStopReachesProcessesThatLeftTheGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	child, orphan := filepath.Join(dir, "child"), filepath.Join(dir, "orphan")
	script := fmt.Sprintf(`setsid sh -c 'echo $$ > %s; exec sleep 1000' & `+
		`(setsid sh -c 'echo $$ > %s; exec sleep 1001' &) ; echo ready; exec sleep 1002`, child, orphan)
	spec := childSpec(t, "escapes", "unused")
	spec.Command = script
	h := newHarness(t, spec)
	h.start()
	h.waitLine("ready")
	cpid, opid := readPid(t, child), readPid(t, orphan)
	for _, pid := range []int{cpid, opid} {
		killOnCleanup(t, pid) // if the test fails, do not leak them
	}
	testutil.Eventually(t, "the double-forked process handed to us", func() bool {
		st, err := procfs.ReadStat(opid)
		return err == nil && st.Ppid == syscall.Getpid() && st.Session == opid
	})
	h.stop()
	for _, pid := range []int{cpid, opid} {
		testutil.Eventually(t, fmt.Sprintf("pid %d gone", pid), func() bool { return !procfs.Alive(pid, 0) })
	}
}

// TestRunTokenNotFoundIsReadAgain pins that only a token found is kept:
// a process between an execve and its new image shows an empty
// environment, so "no token" may be untrue a moment later. Keeping it left
// a daemonizing child caught mid-exec unattributed, and it outlived its
// run (the chaos run found it, docs/chaos.md).
func TestRunTokenNotFoundIsReadAgain(t *testing.T) {
	t.Parallel()
	start := func(env ...string) procfs.Stat {
		t.Helper()
		cmd := exec.Command("/bin/sleep", "600")
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		var st procfs.Stat
		// The comm changes early in execve, before the new image's
		// environment is in place: wait for the environment itself (every
		// start here passes PATH), or the test races the very window the
		// tree must tolerate.
		testutil.Eventually(t, "sleep exec'd", func() bool {
			var err error
			st, err = procfs.ReadStat(cmd.Process.Pid)
			_, hasPath := procfs.EnvValue(cmd.Process.Pid, "PATH")
			return err == nil && st.Comm == "sleep" && hasPath
		})
		return st
	}
	tr := &tree{runOf: map[proc]string{}}
	without := start("PATH=/bin")
	if tok := tr.runTokenLocked(without); tok != "" {
		t.Fatalf("token %q for a process without one", tok)
	}
	if _, kept := tr.runOf[proc{without.Pid, without.StartTime}]; kept {
		t.Error("a token not found was kept; it must be read again at the next look")
	}
	with := start("PATH=/bin", RunEnv+"=abc")
	if tok := tr.runTokenLocked(with); tok != "abc" {
		t.Fatalf("token %q, want abc", tok)
	}
	if tok := tr.runOf[proc{with.Pid, with.StartTime}]; tok != "abc" {
		t.Errorf("kept %q, want abc", tok)
	}
}
