package process

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/runtoken"
	"golang.org/x/sys/unix"
)

// shareWindow is how old a listing of the daemon's own children may be and
// still serve another sample: memory checks are aligned to their interval,
// so every process due at the same tick shares one listing.
const shareWindow = 100 * time.Millisecond

// tree is this OS process's view of the processes it started: it finds the
// members of a managed process by walking down from what it knows instead
// of reading every pid of the host, so supervision costs what the daemon
// manages and nothing more, however busy the host is.
//
// To make that walk complete the process becomes a child subreaper
// (PR_SET_CHILD_SUBREAPER): a member whose parent exits is handed to the
// daemon rather than to init, so it stays below us. The daemon then has to
// reap those adopted children itself, which is what the reaper goroutine
// does on SIGCHLD.
//
// The subreaper bit and SIGCHLD belong to the whole OS process, and a second
// reaper would collect the exit status that the first one's spawns wait for.
// So there is exactly one tree per OS process, shared by every ExecRunner
// and held (reference counted) by every live handle and running hook: the
// reaper runs exactly while something of ours may need reaping.
type tree struct {
	self      int
	selfPgrp  int
	subreaper bool // false only where the kernel refused: see groupAlive

	// spawnMu is held across a spawn and its registration and by the
	// reaper, so the reaper never collects a child whose exit status
	// os/exec is about to wait for.
	spawnMu sync.Mutex
	spawned map[int]struct{}

	listMu  sync.Mutex
	listAt  time.Time
	adopted []procfs.Stat   // direct children not spawned by us (orphans handed to us), at listAt
	runOf   map[proc]string // the RunEnv token of each adopted child, read once from its environment

	stop chan struct{}
	done chan struct{}
}

// shared holds the one tree of this OS process; see tree.
var shared struct {
	mu   sync.Mutex
	t    *tree
	refs int
}

// acquireTree returns the process's tree, creating it (and starting its
// reaper) on first use. Each call must be paired with a release.
func acquireTree() *tree {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.refs == 0 {
		if shared.t == nil {
			t := &tree{self: os.Getpid(), selfPgrp: unix.Getpgrp(), spawned: map[int]struct{}{}, runOf: map[proc]string{}}
			t.subreaper = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == nil
			shared.t = t
		}
		t := shared.t
		t.stop, t.done = make(chan struct{}), make(chan struct{})
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGCHLD)
		go t.reapLoop(sig)
	}
	shared.refs++
	return shared.t
}

// release drops one reference; the last one stops the reaper (the
// subreaper bit stays: adopted children wait as zombies for the next use).
func (t *tree) release() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.refs--
	if shared.refs == 0 {
		close(t.stop)
		<-t.done
	}
}

func (t *tree) reapLoop(sig chan os.Signal) {
	defer close(t.done)
	defer signal.Stop(sig)
	t.reap() // whatever died while nobody listened
	for {
		select {
		case <-t.stop:
			return
		case <-sig:
			t.reap()
		}
	}
}

// reap collects the exit status of adopted children that have exited (on
// the main thread's list, see adoptedChildren). It
// leaves alone the children we spawned (os/exec waits for those) and any
// child in our own process group: only our spawns get a group of their own,
// so a child in ours was started by some other code of this OS process
// (a test helper, say) that will wait for it.
func (t *tree) reap() {
	t.spawnMu.Lock()
	defer t.spawnMu.Unlock()
	for _, pid := range procfs.MainThreadChildren(t.self) {
		if _, ours := t.spawned[pid]; ours {
			continue
		}
		st, err := procfs.ReadStat(pid)
		if err != nil || st.Live() || st.Pgrp == t.selfPgrp {
			continue
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil) // it is ours to reap; ECHILD means it is gone already
	}
}

// start starts cmd and registers it as one of our spawns, so the reaper
// leaves its exit status to cmd.Wait. Call waited with the pid once Wait
// has returned.
func (t *tree) start(cmd *exec.Cmd) error {
	t.spawnMu.Lock()
	defer t.spawnMu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	t.spawned[cmd.Process.Pid] = struct{}{}
	return nil
}

func (t *tree) waited(pid int) {
	t.spawnMu.Lock()
	defer t.spawnMu.Unlock()
	delete(t.spawned, pid)
}

// proc names one process: a pid and its start time.
type proc struct {
	pid   int
	start uint64
}

// RunEnv is the variable the exec runner adds to every run's environment
// with a token unique to the run (runtoken.New: the daemon's instance,
// then the run). Descendants inherit it, so an orphan that left the run's
// process group and session (a daemon that double-forked and called
// setsid) can still be told apart when it is handed to us, and found by
// rollbridgectl recover once the daemon is gone.
const RunEnv = runtoken.Env

// runToken returns the RunEnv token an adopted child carries ("" for none).
// Called with listMu held; a token found is kept while the child stays
// adopted.
//
// A token not found is not kept but read again at the next look: between
// an execve and the setup of the new image the kernel shows an empty
// environment, and a daemonizing child is handed to us exactly while it
// execs (setsid, then sh, then the daemon). Keeping that "" left such a
// child unattributed for good, so it outlived its run (found by the chaos
// run, docs/chaos.md).
func (t *tree) runTokenLocked(st procfs.Stat) string {
	k := proc{st.Pid, st.StartTime}
	if tok, ok := t.runOf[k]; ok {
		return tok
	}
	tok, ok := procfs.EnvValue(st.Pid, RunEnv)
	if ok {
		t.runOf[k] = tok
	}
	return tok
}

// adoptedChildren lists our direct children that we did not spawn (orphans
// of managed processes), from a listing at most maxAge old. The kernel
// hands orphans to the subreaper's first live thread, the main thread, so
// only its list is read (the daemon has dozens of threads).
func (t *tree) adoptedChildren(maxAge time.Duration) []procfs.Stat {
	t.listMu.Lock()
	defer t.listMu.Unlock()
	if maxAge > 0 && time.Since(t.listAt) <= maxAge {
		return t.adopted
	}
	t.spawnMu.Lock()
	spawned := make(map[int]struct{}, len(t.spawned))
	for pid := range t.spawned {
		spawned[pid] = struct{}{}
	}
	t.spawnMu.Unlock()
	var out []procfs.Stat
	runOf := make(map[proc]string, len(t.runOf))
	for _, pid := range procfs.MainThreadChildren(t.self) {
		if _, ours := spawned[pid]; ours {
			continue
		}
		if st, err := procfs.ReadStat(pid); err == nil {
			out = append(out, st)
			if tok, ok := t.runOf[proc{st.Pid, st.StartTime}]; ok {
				runOf[proc{st.Pid, st.StartTime}] = tok
			}
		}
	}
	t.adopted, t.listAt, t.runOf = out, time.Now(), runOf
	return out
}

// adoptedOf returns the adopted children that belong to run g: those still
// in its process group, and those carrying its RunEnv token.
func (t *tree) adoptedOf(g *group, maxAge time.Duration) []procfs.Stat {
	all := t.adoptedChildren(maxAge)
	t.listMu.Lock()
	defer t.listMu.Unlock()
	var out []procfs.Stat
	for _, st := range all {
		if st.Pgrp == g.leader || (g.token != "" && st.Live() && t.runTokenLocked(st) == g.token) {
			out = append(out, st)
		}
	}
	return out
}

// group is what a handle remembers about the processes of one managed run
// between two looks: the leader, and every member seen so far by pid and
// start time, so a member stays known after its parent exits (when it is
// handed to us, or, without the subreaper bit, to init).
type group struct {
	leader int
	token  string         // the run's RunEnv value; "" for groups that have none (hooks)
	known  map[int]uint64 // pid -> start time
}

// members walks the run's processes: the leader's descendants while it
// lives, every previously seen member still alive and its descendants, and
// adopted children of the run (see adoptedOf: an orphan we had not seen
// yet). That includes members that called setsid or changed their process
// group: they are the app's processes, use the app's memory and are stopped
// with it. Only the pids found are read. It updates g.known.
func (t *tree) members(g *group, leaderAlive bool, maxAge time.Duration) []procfs.Stat {
	var out []procfs.Stat
	seen := map[int]bool{}
	var walk func(pid int, start uint64)
	walk = func(pid int, start uint64) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		st, err := procfs.ReadStat(pid)
		if err != nil || !st.Live() || (start != 0 && st.StartTime != start) {
			return // gone, a zombie (it has no children left), or a recycled pid
		}
		out = append(out, st)
		for _, k := range procfs.ChildrenOf(st) {
			walk(k, 0)
		}
	}
	if leaderAlive {
		walk(g.leader, 0)
	}
	for pid, start := range g.known {
		walk(pid, start)
	}
	for _, st := range t.adoptedOf(g, maxAge) {
		walk(st.Pid, st.StartTime)
	}
	next := make(map[int]uint64, len(out))
	for _, st := range out {
		if st.Pid != g.leader {
			next[st.Pid] = st.StartTime
		}
	}
	g.known = next
	return out
}

// alive reports whether any process of run g is alive once its leader has
// exited: a member of its process group, or a member that left the group.
//
// kill(-pgid, 0) alone is not enough: it also succeeds for zombies, and an
// adopted member waits as a zombie until the reaper runs.
func (t *tree) alive(g *group) bool {
	for pid, start := range g.known { // the common case while a stop waits: one read
		if st, err := procfs.ReadStat(pid); err == nil && st.Live() && st.StartTime == start {
			return true
		}
	}
	if len(t.members(g, false, 0)) > 0 {
		return true
	}
	return t.groupBeyondTree(g)
}

// groupBeyondTree covers the one case the walk cannot: without the
// subreaper bit an orphaned member of the group may sit under init. Only
// then, and only while a stop waits, every pid is read: leaving a member
// behind would be worse than the cost.
func (t *tree) groupBeyondTree(g *group) bool {
	if t.subreaper {
		return false
	}
	if err := unix.Kill(-g.leader, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	return scanGroup(g.leader)
}

// signal sends sig to every process of run g: to its process group while
// the group has a live member, and one by one to the members that left it.
// A group without a live member is left alone: its id may already belong
// to an unrelated process.
func (t *tree) signal(g *group, leaderAlive bool, sig syscall.Signal) error {
	ms := t.members(g, leaderAlive, 0)
	groupLive := leaderAlive
	for _, m := range ms {
		groupLive = groupLive || m.Pgrp == g.leader
	}
	var errs []error
	if groupLive || t.groupBeyondTree(g) {
		if err := unix.Kill(-g.leader, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("signal process group %d: %w", g.leader, err))
		}
	}
	for _, m := range ms {
		if m.Pgrp == g.leader {
			continue
		}
		// Just found below us and alive; a pid is not reused before its
		// parent (we, or a member) has reaped it.
		if err := unix.Kill(m.Pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("signal process %d: %w", m.Pid, err))
		}
	}
	return errors.Join(errs...)
}

// groupAlive reports whether process group pgid (a leader that has exited)
// still has a live member: for a hook's group, which has no run token.
func (t *tree) groupAlive(g *group) bool {
	if err := unix.Kill(-g.leader, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	for _, st := range t.members(g, false, 0) {
		if st.Pgrp == g.leader {
			return true
		}
	}
	return t.groupBeyondTree(g)
}

// scanGroup reads every pid of the host for a live member of group pgid.
func scanGroup(pgid int) bool {
	pids, err := procfs.AllPids()
	if err != nil {
		return true // no /proc: trust kill, which found someone
	}
	for _, pid := range pids {
		if st, err := procfs.ReadStat(pid); err == nil && st.Pgrp == pgid && st.Live() {
			return true
		}
	}
	return false
}
