// Package procfs reads the few facts rollbridge needs about a process from
// Linux's /proc: its state, parent, process group, start time, resident
// memory, children and command line; and which process holds a listening
// TCP socket (socket.go).
//
// Every function but AllPids and SocketHolders reads only the files of the
// pids it is given, so callers that walk a process tree pay for that tree,
// never for the whole host. Those two are the exceptions, for the few
// callers that must find processes no tree leads to; their docs say who
// they are.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Stat is what rollbridge uses of /proc/PID/stat.
type Stat struct {
	Pid       int
	Comm      string // field 2, without the parentheses
	State     byte   // field 3: R, S, D, Z, X, ...
	Ppid      int    // field 4
	Pgrp      int    // field 5
	Session   int    // field 6
	Threads   int    // field 20
	StartTime uint64 // field 22, clock ticks since boot
	RSSPages  uint64 // field 24
}

// Live reports whether the process is running or sleeping, not a zombie
// (exited, waiting to be reaped) or dead.
func (s Stat) Live() bool { return s.State != 'Z' && s.State != 'X' }

// ReadStat reads /proc/PID/stat. The error wraps fs.ErrNotExist when the
// process is gone.
func ReadStat(pid int) (Stat, error) {
	var buf [512]byte
	b, err := readFile("/proc/"+strconv.Itoa(pid)+"/stat", buf[:])
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(pid, b)
}

// readFile reads a /proc file with plain system calls into buf (growing it
// when needed): open, read, close. os.ReadFile costs three times as much
// here (it also stats the file and registers it with the poller), which
// matters for a supervisor that reads a few files per process every second.
//
// procfs fills a read as far as the file goes, so a read that returns less
// than asked is the end of the file and no extra read is made to see EOF.
func readFile(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, pathError("open", path, err)
	}
	defer func() { _ = unix.Close(fd) }() // read-only: nothing to flush
	n := 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, pathError("read", path, err)
		}
		n += m
		if m == 0 || n < len(buf) {
			return buf[:n], nil
		}
	}
}

// pathError makes ENOENT and ESRCH (the process or thread is gone) match
// fs.ErrNotExist, as os.ReadFile's errors would.
func pathError(op, path string, err error) error {
	if err == unix.ESRCH {
		err = unix.ENOENT
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// ParseStat parses the contents of /proc/PID/stat.
func ParseStat(pid int, b []byte) (Stat, error) {
	// The command name may itself contain spaces and parentheses, so the
	// fields are counted from the last ')'.
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open || closing+2 > len(b) {
		return Stat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[closing+2:])) // f[0] is field 3
	if len(f) < 22 || len(f[0]) == 0 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	st := Stat{Pid: pid, State: f[0][0], Comm: string(b[open+1 : closing])}
	ints := []struct {
		name string
		idx  int
		dst  *int
	}{{"ppid", 1, &st.Ppid}, {"pgrp", 2, &st.Pgrp}, {"session", 3, &st.Session}, {"num_threads", 17, &st.Threads}}
	for _, x := range ints {
		v, err := strconv.Atoi(f[x.idx])
		if err != nil {
			return Stat{}, fmt.Errorf("/proc/%d/stat: %s: %w", pid, x.name, err)
		}
		*x.dst = v
	}
	var err error
	if st.StartTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	if st.RSSPages, err = strconv.ParseUint(f[21], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("/proc/%d/stat: rss: %w", pid, err)
	}
	return st, nil
}

// StartTime returns when pid started, in clock ticks since boot. A pid and
// its start time together name one process: a recycled pid has a different
// start time.
func StartTime(pid int) (uint64, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return 0, err
	}
	return st.StartTime, nil
}

// Alive reports whether pid is a live (not zombie) process that started at
// startTime; startTime 0 skips that check.
func Alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := ReadStat(pid)
	if err != nil || !st.Live() {
		return false
	}
	return startTime == 0 || st.StartTime == startTime
}

// Children lists the pids of pid's children. The kernel keeps the list per
// thread (a child belongs to the thread that forked it, and an orphan to
// the thread it was handed to), so every task's list is read. A process
// that is gone has no children and no error.
//
// The kernel documents this list as exact only while nothing forks or
// exits; callers that poll it see a new child at their next look.
func Children(pid int) ([]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	tasks, err := listDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []int
	var buf [256]byte
	for _, tid := range tasks {
		out = appendChildren(out, dir+tid+"/children", buf[:])
	}
	return out, nil
}

// ChildrenOf is Children for a process just read with ReadStat: a process
// with one thread has one list, at task/PID, so the task directory is not
// listed. A thread started since the stat was read is missed until the
// next look.
func ChildrenOf(st Stat) []int {
	if st.Threads != 1 {
		kids, _ := Children(st.Pid) // unreadable: no children found now, the next look tries again
		return kids
	}
	return MainThreadChildren(st.Pid)
}

// MainThreadChildren lists the children of pid's main thread only. That is
// where the kernel puts the orphans it hands to a child subreaper (the
// first live thread of the process), so a subreaper finds what it adopted
// with one read, however many threads it has.
func MainThreadChildren(pid int) []int {
	var buf [256]byte
	p := strconv.Itoa(pid)
	return appendChildren(nil, "/proc/"+p+"/task/"+p+"/children", buf[:])
}

// appendChildren adds the pids listed in a task's children file to out. A
// thread that ended meanwhile (ENOENT or ESRCH) has none.
func appendChildren(out []int, path string, buf []byte) []int {
	b, err := readFile(path, buf)
	if err != nil {
		return out
	}
	for len(b) > 0 {
		var f []byte
		if i := bytes.IndexByte(b, ' '); i >= 0 {
			f, b = b[:i], b[i+1:]
		} else {
			f, b = b, nil
		}
		if c, err := strconv.Atoi(string(bytes.TrimSpace(f))); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// listDir returns the names in dir (without "." and ".."), with plain
// system calls for the reason readFile gives.
func listDir(dir string) ([]string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, pathError("open", dir, err)
	}
	defer func() { _ = unix.Close(fd) }() // read-only: nothing to flush
	var buf [4096]byte
	var names []string
	for {
		n, err := unix.Getdents(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, pathError("getdents", dir, err)
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// MaxEnvironBytes bounds what EnvValue reads of /proc/PID/environ. The
// environment is the process's to fill (up to a quarter of its stack
// limit), and the processes read may be anyone's: a bounded read keeps a
// huge one from costing the reader memory. rollbridge puts its own
// variables first (see process.ExecRunner), so they lie well inside it.
const MaxEnvironBytes = 256 << 10

// EnvValue returns the value of key in pid's environment as the process
// started with it (/proc/PID/environ, opened without following symlinks,
// at most MaxEnvironBytes of it), and whether it was there. Reading
// another user's environment needs the rights to ptrace it (root, or the
// same user); otherwise it reports false.
func EnvValue(pid int, key string) (string, bool) {
	vals, _ := EnvValues(pid, key)
	v, ok := vals[key]
	return v, ok
}

// EnvValues is EnvValue for several keys with one read: the map holds
// those found. empty reports an environment read as empty (or not read at
// all): a kernel thread's, or — for a moment — that of a process in the
// middle of an execve, whose new image has no environment yet; a caller
// that must not miss a process reads it again.
func EnvValues(pid int, keys ...string) (vals map[string]string, empty bool) {
	out := map[string]string{}
	b, err := readCapped("/proc/"+strconv.Itoa(pid)+"/environ", MaxEnvironBytes)
	if err != nil || len(b) == 0 {
		return out, true
	}
	for len(b) > 0 {
		var kv []byte
		if i := bytes.IndexByte(b, 0); i >= 0 {
			kv, b = b[:i], b[i+1:]
		} else {
			kv, b = b, nil
		}
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if !ok {
			continue
		}
		for _, want := range keys {
			if _, seen := out[want]; !seen && string(k) == want { // the first wins, as getenv finds it
				out[want] = string(v)
			}
		}
	}
	return out, false
}

// readCapped reads at most limit bytes of a /proc file, opened with
// O_NOFOLLOW. When the file is longer, the part after the last NUL within
// the bound (an entry cut in half) is dropped.
func readCapped(path string, limit int) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, pathError("open", path, err)
	}
	defer func() { _ = unix.Close(fd) }() // read-only: nothing to flush
	buf := make([]byte, min(limit+1, 4096))
	n := 0
	for n <= limit {
		if n == len(buf) {
			buf = append(buf, make([]byte, min(len(buf), limit+1-len(buf)))...)
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, pathError("read", path, err)
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
	b := buf[:limit]
	if i := bytes.LastIndexByte(b, 0); i >= 0 {
		return b[:i+1], nil
	}
	return nil, nil
}

// UIDs returns pid's real, effective, saved and filesystem user ids (the
// Uid: line of /proc/PID/status). The error wraps fs.ErrNotExist when the
// process is gone.
func UIDs(pid int) ([4]uint32, error) {
	var ids [4]uint32
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	b, err := readFile(path, make([]byte, 2048))
	if err != nil {
		return ids, err
	}
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 4 {
			break
		}
		for i, s := range f {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return ids, fmt.Errorf("%s: Uid: %w", path, err)
			}
			ids[i] = uint32(v)
		}
		return ids, nil
	}
	return ids, fmt.Errorf("%s: no Uid line", path)
}

// Cmdline is the process's argv joined by spaces, or comm when the kernel
// shows no argv (kernel threads, exiting processes).
func Cmdline(pid int, comm string) string {
	b, err := readFile("/proc/"+strconv.Itoa(pid)+"/cmdline", make([]byte, 256))
	if err != nil || len(b) == 0 {
		return comm
	}
	return strings.TrimSpace(string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
}

// AllPids lists every process of the host. Its cost grows with the host,
// not with what the caller manages, so it is only for work that runs once
// and must find processes it did not start: rollbridgectl's offline tools
// (predeploy-cleanup's legacy takeover, the group check when recover or
// predeploy-cleanup stops a process group whose leader is gone) and the
// daemon's stop of a group whose member it cannot reach through its own
// tree, and SocketHolders, which names the holder of a listener found on a
// release's port. Never call it from a periodic path: status, memory sampling, the
// state file and the watchdog read only the trees they own.
func AllPids() ([]int, error) {
	names, err := listDir("/proc")
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
