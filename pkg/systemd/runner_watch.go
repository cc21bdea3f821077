package systemd

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// populatedWatch tells, without asking systemd, the moment a new unit's
// main process exists: systemd moves the process it forks into the unit's
// cgroup right after the fork, in the same step that ends a Type=simple
// start job, while the job's JobRemoved signal still has to travel through
// dbus-daemon to the daemon (most of the wait for it on a loaded host).
// The kernel reports both steps through inotify: the unit's cgroup
// directory appearing in its slice's, then its cgroup.events changing to
// "populated 1".
//
// It is only used for a cgroup that does not exist yet when the start is
// sent, so whatever appears in it belongs to this run.
type populatedWatch struct {
	f     *os.File
	dir   string        // the unit's cgroup directory
	ready chan struct{} // closed once the cgroup holds a process
	done  chan struct{} // closed when the reader has returned
}

// watchPopulated starts watching for cgroup cg (a unit's, derived with
// unitCgroup) to hold a process. It returns nil when it cannot tell: no
// unified hierarchy to watch (cgroup.events is a cgroup v2 file), the
// slice's cgroup does not exist yet (the application's first start), or
// cg exists already (a process there may be an earlier run's). Stop it
// when done.
func (c cgroupFS) watchPopulated(cg string) *populatedWatch {
	if cg == "" {
		return nil
	}
	dir := filepath.Join(c.procsRoot, filepath.Clean("/"+cg))
	parent := filepath.Dir(dir)
	if _, err := os.Stat(filepath.Join(parent, "cgroup.events")); err != nil {
		return nil
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	if _, err := unix.InotifyAddWatch(fd, parent, unix.IN_CREATE|unix.IN_ONLYDIR); err != nil {
		_ = unix.Close(fd)
		return nil
	}
	// Checked after the watch is in place: a directory created from now
	// on is reported.
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		_ = unix.Close(fd)
		return nil
	}
	w := &populatedWatch{f: os.NewFile(uintptr(fd), "inotify"), dir: dir, ready: make(chan struct{}), done: make(chan struct{})}
	go w.read()
	return w
}

// read follows the events until the cgroup holds a process or the watch
// is stopped (the blocked Read then fails).
func (w *populatedWatch) read() {
	defer close(w.done)
	name := filepath.Base(w.dir)
	buf := make([]byte, 4096)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_CREATE != 0 && string(bytes.TrimRight(nameBytes, "\x00")) == name {
				// From here on every change of cgroup.events is reported;
				// the process may have arrived before the watch, so look.
				if !w.addWatch(filepath.Join(w.dir, "cgroup.events"), unix.IN_MODIFY) {
					return // gone again: the job failed; its result says why
				}
			}
		}
		if populated(w.dir) {
			close(w.ready)
			return
		}
	}
}

// addWatch adds path to the watch. Through SyscallConn, because Fd would
// make the file blocking, and then Stop could not wake the reader.
func (w *populatedWatch) addWatch(path string, mask uint32) bool {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return false
	}
	var werr error
	if err := rc.Control(func(fd uintptr) { _, werr = unix.InotifyAddWatch(int(fd), path, mask) }); err != nil {
		return false
	}
	return werr == nil
}

// populated reports whether cgroup directory dir holds a process.
func populated(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	return err == nil && len(bytes.TrimSpace(b)) > 0
}

// Ready is closed once the cgroup holds a process.
func (w *populatedWatch) Ready() <-chan struct{} { return w.ready }

// Stop ends the watch and waits for its reader. It is safe to call on nil.
func (w *populatedWatch) Stop() {
	if w == nil {
		return
	}
	_ = w.f.Close() // wakes the blocked Read
	<-w.done
}
