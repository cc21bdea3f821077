package main

import (
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestMain doubles as a multi-threaded child process (a Go program has
// several threads) for the pinning tests.
func TestMain(m *testing.M) {
	if os.Getenv("SUITE_TEST_CHILD") == "sleep" {
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func needPinning(t *testing.T) *pinning {
	t.Helper()
	p, err := newPinning()
	if err != nil {
		t.Skipf("pinning needs 2 CPUs here: %v", err)
	}
	return p
}

// child starts this test binary as a sleeping child in a process group of
// its own, on cpus (nil: unpinned), and waits until it runs several threads.
func child(t *testing.T, cpus []int) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "SUITE_TEST_CHILD=sleep")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startOn(cmd, cpus); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for len(tasks(t, cmd.Process.Pid)) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the child never ran a second thread")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd
}

func tasks(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var tids []int
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids
}

// everyThreadOn fails unless every thread of pid may run on cpus only.
func everyThreadOn(t *testing.T, pid int, cpus []int) {
	t.Helper()
	for _, tid := range tasks(t, pid) {
		got, err := allowedCPUs(tid)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, cpus) {
			t.Fatalf("thread %d of %d may run on CPUs %v, want %v", tid, pid, got, cpus)
		}
	}
}

// The child starts on the CPUs asked for, every thread of it (a Go child
// sizes GOMAXPROCS from that), and this process keeps its own mask.
func TestStartOnPinsTheChildOnly(t *testing.T) {
	p := needPinning(t)
	mine, err := allowedCPUs(0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // several forks: the locked thread's mask must be restored each time
		cmd := child(t, p.proxy)
		everyThreadOn(t, cmd.Process.Pid, p.proxy)
	}
	everyThreadOn(t, os.Getpid(), mine)
}

// pinGroup moves every process of a group, every thread of each: a pinned
// daemon's app inherits the proxy's CPU and is moved to the load CPU.
func TestPinGroupMovesEveryProcessAndThread(t *testing.T) {
	p := needPinning(t)
	leader := child(t, p.proxy)
	// A second process in the leader's group.
	exe, _ := os.Executable()
	other := exec.Command(exe)
	other.Env = append(os.Environ(), "SUITE_TEST_CHILD=sleep")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: leader.Process.Pid}
	if err := startOn(other, p.proxy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	if err := pinGroup(leader.Process.Pid, p.load); err != nil {
		t.Fatal(err)
	}
	everyThreadOn(t, leader.Process.Pid, p.load)
	everyThreadOn(t, other.Process.Pid, p.load)
}

func TestPinGroupWithoutProcesses(t *testing.T) {
	p := needPinning(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if err := pinGroup(cmd.Process.Pid, p.load); err == nil {
		t.Fatal("pinned a process group that no longer exists")
	}
}

// pinSelf moves the load generator (this process) and undoes it.
func TestPinSelfAndRestore(t *testing.T) {
	p := needPinning(t)
	mine, err := allowedCPUs(0)
	if err != nil {
		t.Fatal(err)
	}
	restore, err := pinSelf(p.load)
	if err != nil {
		t.Fatal(err)
	}
	everyThreadOn(t, os.Getpid(), p.load)
	restore()
	everyThreadOn(t, os.Getpid(), mine)
}
