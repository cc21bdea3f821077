package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procStat is what we use of /proc/PID/stat.
type procStat struct {
	state     byte   // field 3: R, S, D, Z, ...
	pgrp      int    // field 5
	startTime uint64 // field 22, clock ticks since boot
	rssPages  uint64 // field 24
	comm      string // field 2, without the parentheses
}

func (s procStat) live() bool { return s.state != 'Z' && s.state != 'X' }

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name may itself contain spaces and parentheses, so the
	// fields are counted from the last ')'.
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open || closing+2 > len(b) {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[closing+2:])) // f[0] is field 3
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	st := procStat{state: f[0][0], comm: string(b[open+1 : closing])}
	if st.pgrp, err = strconv.Atoi(f[2]); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: pgrp: %w", pid, err)
	}
	if st.startTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	if st.rssPages, err = strconv.ParseUint(f[21], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: rss: %w", pid, err)
	}
	return st, nil
}

// StartTime returns when pid started, in clock ticks since boot (field 22 of
// /proc/PID/stat). A pid and its start time together name one process: a
// recycled pid has a different start time, which is how orphan detection
// tells a leftover child from an unrelated newcomer.
func StartTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return st.startTime, nil
}

// Alive reports whether pid is a running (not zombie) process that started
// at startTime; startTime 0 skips that check.
func Alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	if err != nil || !st.live() {
		return false
	}
	return startTime == 0 || st.startTime == startTime
}

// groupPids scans /proc for the live members of process group pgid.
func groupPids(pgid int) ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.pgrp != pgid || !st.live() {
			continue // not ours, a zombie, or gone meanwhile
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// groupAlive reports whether group pgid has a live member. hint lists
// members found last time: checking them first spares a scan of all of
// /proc on every poll while a stop waits for the group to end. It returns
// the members it knows of for the next call.
//
// kill(-pgid, 0) alone is not enough: it also succeeds for zombies, and an
// init that reaps orphans lazily (or never, in some containers) would make a
// dead group look alive forever.
func groupAlive(pgid int, hint []int) (bool, []int) {
	if err := unix.Kill(-pgid, 0); errors.Is(err, unix.ESRCH) {
		return false, nil
	}
	for _, pid := range hint {
		if st, err := readStat(pid); err == nil && st.pgrp == pgid && st.live() {
			return true, hint
		}
	}
	pids, err := groupPids(pgid)
	if err != nil {
		return true, nil // no /proc: trust kill, which found someone
	}
	return len(pids) > 0, pids
}

// groupMembers describes the live members of group pgid.
func groupMembers(pgid int) []Member {
	pids, err := groupPids(pgid)
	if err != nil {
		return nil
	}
	page := uint64(os.Getpagesize())
	out := make([]Member, 0, len(pids))
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil || !st.live() {
			continue
		}
		out = append(out, Member{Pid: pid, Command: cmdline(pid, st.comm), RSSBytes: st.rssPages * page})
	}
	return out
}

// cmdline is the process's argv joined by spaces, or its short name when
// the kernel shows no argv (kernel threads, exiting processes).
func cmdline(pid int, comm string) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return comm
	}
	return strings.TrimSpace(string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
}
