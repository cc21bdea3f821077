package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

func TestParseStatOddNames(t *testing.T) {
	// A command name may hold spaces and parentheses; fields count from the last ')'.
	line := "42 (a) b (c)) S 7 42 40 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000000 250 18446744073709551615"
	st, err := ParseStat(42, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{Pid: 42, Comm: "a) b (c)", State: 'S', Ppid: 7, Pgrp: 42, Session: 40, Threads: 1, StartTime: 12345, RSSPages: 250}
	if st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "42 no parens", "42 (x) S 1 2", "42 (x) S a 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 1 1"} {
		if _, err := ParseStat(42, []byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) accepted malformed input", bad)
		}
	}
}

func TestSelfAndChildren(t *testing.T) {
	self, err := ReadStat(os.Getpid())
	if err != nil || !self.Live() || self.Ppid != os.Getppid() {
		t.Fatalf("ReadStat(self) = %+v, %v", self, err)
	}
	if !Alive(os.Getpid(), self.StartTime) || Alive(os.Getpid(), self.StartTime+1) || Alive(0, 0) {
		t.Error("Alive does not tell this process by its start time")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	kids, err := Children(os.Getpid())
	if err != nil || !slices.Contains(kids, cmd.Process.Pid) {
		t.Errorf("Children(self) = %v, %v; want it to contain %d", kids, err, cmd.Process.Pid)
	}
	// This test binary has many threads; sleep has one (the shortcut).
	if self.Threads < 2 {
		t.Errorf("this process has %d threads, want several", self.Threads)
	}
	st, err := ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if kids := ChildrenOf(st); len(kids) != 0 {
		t.Errorf("ChildrenOf(sleep) = %v", kids)
	}
	if kids := ChildrenOf(self); !slices.Contains(kids, cmd.Process.Pid) {
		t.Errorf("ChildrenOf(self) = %v; want it to contain %d", kids, cmd.Process.Pid)
	}
	waitCmdline(t, cmd.Process.Pid, "sleep 30")
	if kids, err := Children(1 << 30); kids != nil || err != nil {
		t.Errorf("Children(no such pid) = %v, %v; want nothing", kids, err)
	}
	if _, err := ReadStat(1 << 30); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadStat(no such pid) = %v; want fs.ErrNotExist", err)
	}
	if got := Cmdline(1<<30, "gone"); got != "gone" {
		t.Errorf("Cmdline(no such pid) = %q; want the fallback", got)
	}
	long := strings.Repeat("a", 5000)
	c2 := exec.Command("/bin/sh", "-c", "sleep 30; :", long)
	if err := c2.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c2.Process.Kill(); _ = c2.Wait() }()
	want := "/bin/sh -c sleep 30; : " + long
	waitCmdline(t, c2.Process.Pid, want)
}

// waitCmdline waits until pid's command line reads want: a child shows
// ours until its exec is done.
func waitCmdline(t *testing.T, pid int, want string) {
	t.Helper()
	what := fmt.Sprintf("Cmdline(%d) to read the %d bytes %.40q...", pid, len(want), want)
	testutil.Eventually(t, what, func() bool { return Cmdline(pid, "x") == want })
}

// waitExeced waits until pid's execve of cmdline has finished: the kernel
// fills in the new image's arguments before its environment, so a
// cmdline that reads right can still come with an empty environ.
func waitExeced(t *testing.T, pid int, cmdline string) {
	t.Helper()
	waitCmdline(t, pid, cmdline)
	testutil.Eventually(t, fmt.Sprintf("the environment of %d to be readable", pid), func() bool {
		_, empty := EnvValues(pid)
		return !empty
	})
}

func TestAllPids(t *testing.T) {
	pids, err := AllPids()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, os.Getpid()) || !slices.Contains(pids, 1) {
		t.Errorf("AllPids() = %d pids without this process or pid 1", len(pids))
	}
}

func TestEnvValue(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = []string{"A=1", "ROLLBRIDGE_RUN=tok", "ROLLBRIDGE_RUNX=no", "EMPTY="}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitExeced(t, cmd.Process.Pid, "sleep 30")
	for _, c := range []struct {
		key, want string
		ok        bool
	}{{"ROLLBRIDGE_RUN", "tok", true}, {"EMPTY", "", true}, {"A", "1", true}, {"MISSING", "", false}} {
		if got, ok := EnvValue(cmd.Process.Pid, c.key); got != c.want || ok != c.ok {
			t.Errorf("EnvValue(%s) = %q, %v; want %q, %v", c.key, got, ok, c.want, c.ok)
		}
	}
	if _, ok := EnvValue(1<<30, "A"); ok {
		t.Error("EnvValue of a missing process found something")
	}
}

// TestEnvValueReadsABoundedPrefix: a process's environment is the
// process's to fill; past MaxEnvironBytes nothing is read, and an entry
// cut by the bound is not taken for a (shorter) value.
func TestEnvValueReadsABoundedPrefix(t *testing.T) {
	pad := strings.Repeat("x", 100<<10) // one entry may hold up to 128 KiB
	cmd := exec.Command("sleep", "30")
	cmd.Env = []string{"FIRST=1", "P1=" + pad, "P2=" + pad, "P3=" + pad, "LAST=2"} // the bound cuts P3
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitExeced(t, cmd.Process.Pid, "sleep 30")
	got, empty := EnvValues(cmd.Process.Pid, "FIRST", "P3", "LAST")
	if empty {
		t.Error("EnvValues says the environment is empty")
	}
	if got["FIRST"] != "1" {
		t.Errorf("FIRST = %q, want 1", got["FIRST"])
	}
	if v, ok := got["P3"]; ok {
		t.Errorf("P3, cut by the bound, read as a value of %d bytes", len(v))
	}
	if _, ok := got["LAST"]; ok {
		t.Errorf("LAST, 300 KiB in, was read past the %d KiB bound", MaxEnvironBytes>>10)
	}
}

func TestUIDs(t *testing.T) {
	ids, err := UIDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if want := uint32(os.Getuid()); ids != [4]uint32{want, uint32(os.Geteuid()), want, want} {
		t.Errorf("UIDs = %v, want all %d", ids, want)
	}
	if _, err := UIDs(1 << 30); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("UIDs of a missing process: %v, want ErrNotExist", err)
	}
}
