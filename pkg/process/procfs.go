package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

var pageSize = uint64(os.Getpagesize())

// statFields returns the fields of /proc/PID/stat after the command name
// (which may itself contain spaces and parentheses): index 0 is the state.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return nil, errors.New("malformed /proc stat")
	}
	return strings.Fields(string(b[i+2:])), nil
}

// StartTime returns the start time of pid in clock ticks since boot (field
// 22 of /proc/PID/stat). Together with the pid it identifies a process: a
// recycled pid has another start time.
func StartTime(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 20 {
		return 0, errors.New("short /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// groupMembers scans /proc for live (non-zombie) processes in group pgid.
// ok is false when /proc cannot be read, so callers can fall back.
func groupMembers(pgid int, withDetails bool) (members []Member, ok bool) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, false
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, false
	}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil || len(f) < 22 {
			continue // gone meanwhile
		}
		if f[0] == "Z" || f[0] == "X" || f[2] != strconv.Itoa(pgid) {
			continue
		}
		m := Member{Pid: pid}
		if withDetails {
			if pages, err := strconv.ParseUint(f[21], 10, 64); err == nil {
				m.RSSBytes = pages * pageSize
			}
			if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
				m.Command = strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
			}
		}
		members = append(members, m)
	}
	return members, true
}

// groupAlive reports whether group pgid has a live member. kill(-pgid, 0)
// answers "no" cheaply; a "yes" is confirmed in /proc because zombies
// (members whose parent has not reaped them yet) also count for kill.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return false
	}
	if m, ok := groupMembers(pgid, false); ok {
		return len(m) > 0
	}
	return err == nil || errors.Is(err, syscall.EPERM)
}
