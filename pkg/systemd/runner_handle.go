package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// exitPoll is how often a handle whose main process has exited asks
// systemd whether it has recorded the exit yet (it does so within
// milliseconds: the exit and the record are one SIGCHLD apart).
const exitPoll = 5 * time.Millisecond

// exitRecordWait bounds that wait; after it the exit reads as unknown.
const exitRecordWait = 5 * time.Second

// unitHandle is one run of a transient unit: its main process is the
// leader, the unit's cgroup is the group.
type unitHandle struct {
	r      *Runner
	name   string
	cgroup string // the unit's cgroup path, e.g. /rollbridge.slice/rollbridge-demo.slice/x.service
	inv    string // the unit's invocation id, which tells this run from a later one of the same name
	pid    int
	route  *route // where the journal follower sends its lines
	done   chan struct{}
	// confirmed is closed once systemd's ExecMainPID has been compared
	// with pid, when pid was taken from the cgroup (see mainFromCgroup);
	// nil when pid came from systemd.
	confirmed chan struct{}

	mu       sync.Mutex
	main     int // systemd's main pid of the run when it is not pid (see confirm), else 0
	code     *int
	signal   string
	released bool
	cmdlines map[int]cmdline
}

type cmdline struct {
	start uint64
	text  string
}

// attach builds the handle of the run of unit name that is current now,
// and starts watching its main process. started says that the run was
// started by this runner just now (its start job has just ended), rather
// than adopted.
//
// Nothing is asked of systemd on the way when it can be found without it,
// because each D-Bus read right after the start job waits for systemd to
// be done with the job's aftermath (docs/performance.md): the unit's
// cgroup follows from its slice and name, the run's invocation id is on
// that cgroup (see unitCgroup, cgroupFS.invocationID), and the main pid of
// a run just started is the one process in that cgroup (mainFromCgroup).
// Until the derivation has been checked against systemd's own answer (the
// runner's first attach), or where it did not hold, and for the main pid
// whenever the cgroup does not tell, they are read over D-Bus (single
// properties: reading all of a service's costs several times as much).
func (r *Runner) attach(ctx context.Context, name string, rt *route, started bool) (*unitHandle, error) {
	h := &unitHandle{r: r, name: name, route: rt, done: make(chan struct{})}
	cg := unitCgroup(r.slice, name)
	derived := r.derived.Load()
	if started && derived == derivedYes {
		h.pid = r.cg.mainFromCgroup(cg)
	}
	if h.pid != 0 {
		h.confirmed = make(chan struct{})
	} else {
		p, err := r.conn.GetUnitTypePropertyContext(ctx, name, "Service", "ExecMainPID")
		if err != nil {
			return nil, fmt.Errorf("unit %s: %w", name, err)
		}
		if pid, ok := p.Value.Value().(uint32); ok {
			h.pid = int(pid)
		}
	}
	inv, invOK := r.cg.invocationID(cg)
	switch derived {
	case derivedYes:
		h.cgroup, h.inv = cg, inv
		if !invOK {
			h.inv = r.readInvocationID(ctx, name)
		}
	case derivedUnknown:
		if p, err := r.conn.GetUnitTypePropertyContext(ctx, name, "Service", "ControlGroup"); err == nil {
			h.cgroup, _ = p.Value.Value().(string)
		}
		h.inv = r.readInvocationID(ctx, name)
		// Judged on a run that still has its cgroup: one that has ended
		// already says nothing either way.
		if h.cgroup != "" && h.inv != "" {
			if h.cgroup == cg && (!invOK || inv == h.inv) {
				r.derived.Store(derivedYes)
			} else {
				r.derived.Store(derivedNo)
			}
		}
	default:
		if p, err := r.conn.GetUnitTypePropertyContext(ctx, name, "Service", "ControlGroup"); err == nil {
			h.cgroup, _ = p.Value.Value().(string)
		}
		h.inv = r.readInvocationID(ctx, name)
	}
	if h.pid == 0 {
		return nil, fmt.Errorf("unit %s has no main process", name)
	}
	pidfd, err := unix.PidfdOpen(h.pid, unix.PIDFD_NONBLOCK)
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("unit %s: watch pid %d: %w", name, h.pid, err)
	}
	var f *os.File
	if err == nil {
		f = os.NewFile(uintptr(pidfd), "pidfd")
		r.track(f)
	}
	if h.confirmed != nil {
		go h.confirm(f)
	}
	go h.watch(f)
	return h, nil
}

// confirm compares the main pid taken from the cgroup with systemd's
// ExecMainPID, off the start path. They differ only when the run's main
// process forked and exited before its cgroup was read (an app that
// daemonizes at once), leaving its child alone there: the run is then
// over, as systemd (and the exec runner) see it, and the watcher is woken
// to read its exit (h.main) instead of waiting for the child.
func (h *unitHandle) confirm(f *os.File) {
	defer close(h.confirmed)
	ctx, cancel := context.WithTimeout(context.Background(), exitRecordWait)
	defer cancel()
	p, err := h.r.conn.GetUnitTypePropertyContext(ctx, h.name, "Service", "ExecMainPID")
	if err != nil {
		return // runner closed, or unit gone: the watcher learns either way
	}
	pid, _ := p.Value.Value().(uint32)
	if pid == 0 || int(pid) == h.pid {
		return
	}
	h.mu.Lock()
	h.main = int(pid)
	h.mu.Unlock()
	if f != nil {
		_ = f.Close() // wakes the watcher; it may have closed f already
	}
}

// mainPid is the run's main pid as systemd knows it (see confirm).
func (h *unitHandle) mainPid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.main != 0 {
		return h.main
	}
	return h.pid
}

// readInvocationID is the unit's InvocationID over D-Bus, "" when unknown.
func (r *Runner) readInvocationID(ctx context.Context, name string) string {
	p, err := r.conn.GetUnitPropertyContext(ctx, name, "InvocationID")
	if err != nil {
		return ""
	}
	b, ok := p.Value.Value().([]byte)
	if !ok || len(b) == 0 {
		return ""
	}
	return fmt.Sprintf("%x", b)
}

// Whether a unit's cgroup and invocation id can be derived (see attach):
// not known before the runner's first attach, then known for good.
const (
	derivedUnknown int32 = iota
	derivedYes
	derivedNo
)

// watch waits for the main process to exit (its pidfd turns readable),
// then for systemd to record how, and closes done.
func (h *unitHandle) watch(f *os.File) {
	if f != nil {
		if rc, err := f.SyscallConn(); err == nil {
			// The callback runs before every wait and after every wake-up
			// (or once f is closed by Runner.Close): it asks the kernel
			// whether the process has exited, so an exit that happened
			// before the first wait is not missed.
			_ = rc.Read(func(fd uintptr) bool {
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				n, err := unix.Poll(pfd, 0)
				return err != unix.EINTR && (err != nil || n > 0)
			})
		}
		if h.r.untrack(f) {
			// Runner.Close woke us, not an exit: the unit runs on without
			// this daemon, and must not read as exited.
			return
		}
		_ = f.Close()
	}
	if h.confirmed != nil {
		<-h.confirmed // bounded by exitRecordWait
	}
	code, sig := h.exitStatus()
	h.mu.Lock()
	h.code, h.signal = code, sig
	h.mu.Unlock()
	close(h.done)
}

// exitStatus reads the main process's exit from systemd, waiting until it
// has been recorded.
func (h *unitHandle) exitStatus() (*int, string) {
	mainPid := h.mainPid()
	ctx, cancel := context.WithTimeout(context.Background(), exitRecordWait)
	defer cancel()
	for {
		props, err := h.r.conn.GetUnitTypePropertiesContext(ctx, h.name, "Service")
		if err == nil {
			pid, _ := props["ExecMainPID"].(uint32)
			exited, _ := props["ExecMainExitTimestampMonotonic"].(uint64)
			main, _ := props["MainPID"].(uint32)
			if int(pid) != mainPid || (exited != 0 && main == 0) {
				ecode, _ := props["ExecMainCode"].(int32)
				status, _ := props["ExecMainStatus"].(int32)
				switch {
				case int(pid) != mainPid:
					// A later run already replaced ours: our exit is lost.
				case ecode == 1: // CLD_EXITED
					c := int(status)
					return &c, ""
				case ecode == 2 || ecode == 3: // CLD_KILLED, CLD_DUMPED
					name := unix.SignalName(syscall.Signal(status))
					if name == "" {
						name = fmt.Sprintf("SIG%d", status)
					}
					return nil, name
				}
				c := -1
				return &c, ""
			}
		}
		select {
		case <-ctx.Done():
			c := -1
			return &c, ""
		case <-time.After(exitPoll):
		}
	}
}

func (h *unitHandle) Pid() int              { return h.pid }
func (h *unitHandle) Done() <-chan struct{} { return h.done }

func (h *unitHandle) ExitStatus() (*int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.code == nil {
		return nil, h.signal
	}
	c := *h.code
	return &c, h.signal
}

// Signal sends sig to every process of the unit (KillUnit, who=all). A
// unit that is gone is not an error.
func (h *unitHandle) Signal(sig syscall.Signal) error {
	if !h.current() {
		return nil
	}
	err := h.r.conn.KillUnitWithTarget(context.Background(), h.name, "all", int32(sig))
	if err != nil && h.GroupAlive() {
		return fmt.Errorf("signal unit %s: %w", h.name, err)
	}
	return nil
}

// current reports whether the unit of that name is still this run.
func (h *unitHandle) current() bool {
	h.mu.Lock()
	released := h.released
	h.mu.Unlock()
	return !released
}

// GroupAlive reports whether a live process is left in the unit's cgroup.
// When the main process has exited and nothing is left, the run is over:
// the unit (kept loaded for its exit status) is stopped or reset, so it
// leaves no trace in systemctl list-units and its name is free for the
// next run.
func (h *unitHandle) GroupAlive() bool {
	select {
	case <-h.done:
	default:
		return true
	}
	if !h.current() {
		return false
	}
	if h.livePids() > 0 {
		return true
	}
	h.release()
	return false
}

func (h *unitHandle) livePids() int {
	n := 0
	for _, pid := range h.r.cg.procs(h.cgroup) {
		if procfs.Alive(pid, 0) {
			n++
		}
	}
	return n
}

// release stops (or resets, when failed) the unit of a run that is over,
// unless a later run has taken the name.
func (h *unitHandle) release() {
	h.mu.Lock()
	if h.released {
		h.mu.Unlock()
		return
	}
	h.released = true
	h.mu.Unlock()
	h.r.follow.unroute(h.name, h.route, 2*time.Second)
	h.r.lockName(h.name)
	defer h.r.unlockName(h.name)
	ctx, cancel := context.WithTimeout(context.Background(), exitRecordWait)
	defer cancel()
	if p, err := h.r.conn.GetUnitPropertyContext(ctx, h.name, "InvocationID"); err == nil {
		if b, ok := p.Value.Value().([]byte); ok && fmt.Sprintf("%x", b) != h.inv {
			return // the name belongs to a later run now
		}
	}
	props, err := h.r.conn.GetUnitPropertiesContext(ctx, h.name)
	if err != nil {
		return
	}
	switch active, _ := props["ActiveState"].(string); active {
	case "failed":
		_ = h.r.conn.ResetFailedUnitContext(ctx, h.name) // best effort: the next start clears it too
	case "active", "reloading":
		ch := make(chan string, 1)
		if _, err := h.r.conn.StopUnitContext(ctx, h.name, "replace", ch); err == nil {
			select {
			case <-ch:
			case <-ctx.Done():
			}
		}
	}
}

// Members lists the live processes of the unit's cgroup (every process of
// the tree, whatever it did with sessions or process groups, found without
// looking at any other pid of the host) with their command and RSS.
func (h *unitHandle) Members() []process.Member {
	pids := h.r.cg.procs(h.cgroup)
	page := uint64(os.Getpagesize())
	out := make([]process.Member, 0, len(pids))
	h.mu.Lock()
	defer h.mu.Unlock()
	cmds := make(map[int]cmdline, len(pids))
	for _, pid := range pids {
		st, err := procfs.ReadStat(pid)
		if err != nil || !st.Live() {
			continue
		}
		c, ok := h.cmdlines[pid]
		if !ok || c.start != st.StartTime {
			c = cmdline{st.StartTime, procfs.Cmdline(pid, st.Comm)}
		}
		cmds[pid] = c
		out = append(out, process.Member{Pid: pid, Command: c.text, RSSBytes: st.RSSPages * page})
	}
	h.cmdlines = cmds
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out
}

// CgroupMemory is the memory the unit's cgroup accounts for (page cache and
// kernel memory included), beside the RSS summed over Members.
func (h *unitHandle) CgroupMemory() (uint64, bool) { return h.r.cg.memory(h.cgroup) }

// Unit names the unit, for status and logs.
func (h *unitHandle) Unit() string { return h.name }
