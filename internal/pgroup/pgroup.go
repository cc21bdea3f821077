// Package pgroup stops processes from the outside: SIGTERM, a grace
// period, then SIGKILL. It is for rollbridgectl's offline tools (recover
// and predeploy-cleanup), which find what to stop by pid — recorded in the
// state file, or matched by command line — rather than by owning it. The
// daemon stops its own children with pkg/process's richer sequence (quiet
// and stop hooks, drain) and does not use this package.
//
// A pid outlives its process: once a process is reaped, its pid (and the
// process group id it led) may be handed to an unrelated process. Every
// target therefore carries the start time it had when it was found; a pid
// that now has another start time is a different process, is never
// signalled, and counts as gone. Zombies (exited, not yet reaped) count as
// gone too: they hold no resources a deploy needs and cannot be killed.
package pgroup

import (
	"context"
	"errors"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"golang.org/x/sys/unix"
)

// Target is one process to stop.
type Target struct {
	Pid int
	// StartTime is the process's start time when it was found (procfs
	// Stat.StartTime); 0 skips the check, and then a reused pid cannot be
	// told from the original.
	StartTime uint64
	// Group sends the signals to the process group Pid leads (to Pid alone
	// when it leads none), and the target counts as gone only once no
	// member of the group is alive.
	Group bool
}

// Result is what became of one target.
type Result struct {
	Target
	Killed bool // it was still alive after the grace period and got SIGKILL
	Gone   bool // nothing of it is alive any more
}

// KillWait bounds the wait after SIGKILL, which cannot be caught: a process
// that survives it is stuck in the kernel or not ours to kill (EPERM).
const KillWait = 5 * time.Second

// poll is how often liveness is read while waiting.
const poll = 20 * time.Millisecond

// Stop sends SIGTERM to every target at once, waits up to grace for them
// to exit, sends SIGKILL to the survivors and waits up to KillWait for
// those. It returns one Result per target, in order. A target already gone
// is not signalled. When ctx ends, the waits end early and the survivors
// are reported as not Gone.
func Stop(ctx context.Context, targets []Target, grace time.Duration) []Result {
	res := make([]Result, len(targets))
	for i, t := range targets {
		res[i].Target = t
		if alive(t) {
			signal(t, unix.SIGTERM)
		}
	}
	wait(ctx, res, grace)
	for i := range res {
		if alive(res[i].Target) {
			signal(res[i].Target, unix.SIGKILL)
			res[i].Killed = true
		}
	}
	wait(ctx, res, KillWait)
	for i := range res {
		res[i].Gone = !alive(res[i].Target)
	}
	return res
}

// wait returns once every target is gone, d has passed or ctx ended.
func wait(ctx context.Context, res []Result, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		left := false
		for _, r := range res {
			left = left || alive(r.Target)
		}
		if !left {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// own reports whether t.Pid still names the process that was found, or no
// live process at all: a live process with another start time has taken
// over the pid (and may lead a group with that id).
func own(t Target) bool {
	st, err := procfs.ReadStat(t.Pid)
	if err != nil || !st.Live() {
		return true // gone or a zombie: the pid is not reused while the zombie holds it
	}
	return t.StartTime == 0 || st.StartTime == t.StartTime
}

// alive reports whether anything of t is still running.
func alive(t Target) bool {
	if procfs.Alive(t.Pid, t.StartTime) {
		return true
	}
	if !t.Group || !own(t) {
		return false
	}
	// The leader is gone; members may remain. kill(-pgid, 0) fails when
	// none is left, but succeeds for zombie members too, so a success is
	// checked against the host's processes (an offline tool may afford it).
	if err := unix.Kill(-t.Pid, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	pids, err := procfs.AllPids()
	if err != nil {
		return true // no way to look: trust kill, which found someone
	}
	for _, pid := range pids {
		if st, err := procfs.ReadStat(pid); err == nil && st.Pgrp == t.Pid && st.Live() {
			return true
		}
	}
	return false
}

// signal delivers sig to t; errors mean there is nobody left to signal, or
// nobody we may signal, which the caller sees as a survivor.
func signal(t Target, sig unix.Signal) {
	if !own(t) {
		return
	}
	if t.Group {
		if err := unix.Kill(-t.Pid, sig); err == nil {
			return
		}
	}
	if procfs.Alive(t.Pid, t.StartTime) {
		_ = unix.Kill(t.Pid, sig) // see above
	}
}
