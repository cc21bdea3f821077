package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pinning is issue #17's measuring rule: the proxy under test (rollbridged
// or nginx) alone on one CPU, the load generator (this process) and the
// app on another, so that the three do not steal each other's time slices
// and the proxy's CPU per request is its own.
type pinning struct {
	proxy []int // the proxy under test
	load  []int // the load generator and the app
}

// newPinning picks the first two CPUs this process may run on, or says why
// it cannot pin.
func newPinning() (*pinning, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	var cpus []int
	for c := 0; c < len(set)*64 && len(cpus) < 2; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return nil, fmt.Errorf("only %d CPU available", len(cpus))
	}
	// Setting the mask it has already checks that this sandbox lets us.
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_setaffinity: %w", err)
	}
	return &pinning{proxy: cpus[:1], load: cpus[1:2]}, nil
}

// both is the proxy's CPU and the load's: "2 cores" in the cores section.
func (p *pinning) both() []int { return append(append([]int(nil), p.proxy...), p.load...) }

func (p *pinning) String() string {
	return fmt.Sprintf("proxy under test (rollbridged or nginx) on CPU %s; load generator and app on CPU %s (sched_setaffinity)", cpuList(p.proxy), cpuList(p.load))
}

func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

func cpuSet(cpus []int) *unix.CPUSet {
	var s unix.CPUSet
	s.Zero()
	for _, c := range cpus {
		s.Set(c)
	}
	return &s
}

// startOn starts cmd on cpus (nil: wherever this process may run). The
// child inherits the affinity of the thread that forks it, so the fork
// happens on a locked thread pinned for the moment; the runtime creates
// new threads from a clean template thread, never from a locked one, so
// the temporary mask does not leak into this process. A Go child started
// this way also sizes GOMAXPROCS to cpus, as under taskset.
func startOn(cmd *exec.Cmd, cpus []int) error {
	if cpus == nil {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return err
	}
	if err := unix.SchedSetaffinity(0, cpuSet(cpus)); err != nil {
		return fmt.Errorf("pin to CPU %s: %w", cpuList(cpus), err)
	}
	err := cmd.Start()
	if err2 := unix.SchedSetaffinity(0, &old); err2 != nil && err == nil {
		err = err2
	}
	return err
}

// pinTasks moves every thread of pid to cpus. A thread created meanwhile
// inherits its creator's mask, so the loop runs until a pass finds no
// thread it has not pinned.
func pinTasks(pid int, cpus []int) error {
	set := cpuSet(cpus)
	done := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		fresh := false
		for _, en := range ents {
			tid, err := strconv.Atoi(en.Name())
			if err != nil || done[tid] {
				continue
			}
			fresh = true
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pin thread %d of %d: %w", tid, pid, err)
			}
			done[tid] = true
		}
		if !fresh {
			return nil
		}
	}
	return nil
}

// pinGroup moves every process of process group pgid (a managed process
// and whatever it started) to cpus.
func pinGroup(pgid int, cpus []int) error {
	pids := groupPids(pgid)
	if len(pids) == 0 {
		return fmt.Errorf("process group %d: no process", pgid)
	}
	for _, pid := range pids {
		if err := pinTasks(pid, cpus); err != nil {
			return err
		}
	}
	return nil
}

// groupPids are the processes of process group pgid.
func groupPids(pgid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		if pg, err := unix.Getpgid(pid); err == nil && pg == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// allowedCPUs is the affinity of pid (its main thread), for the report
// and the tests.
func allowedCPUs(pid int) ([]int, error) {
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &s); err != nil {
		return nil, err
	}
	var cpus []int
	for c := 0; c < len(s)*64; c++ {
		if s.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// pinSelf moves this process (the load generator) to cpus, with
// GOMAXPROCS to match, and returns what undoes it.
func pinSelf(cpus []int) (restore func(), err error) {
	oldCPUs, err := allowedCPUs(0)
	if err != nil {
		return nil, err
	}
	if err := pinTasks(os.Getpid(), cpus); err != nil {
		return nil, err
	}
	runtime.GOMAXPROCS(len(cpus))
	return func() {
		_ = pinTasks(os.Getpid(), oldCPUs)
		runtime.SetDefaultGOMAXPROCS()
	}, nil
}
