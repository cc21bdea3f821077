package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/runtoken"
	"golang.org/x/sys/unix"
)

const (
	// maxLineBytes bounds one captured line; the rest of a longer line is
	// dropped, so one runaway line cannot eat the daemon's memory.
	maxLineBytes = 64 << 10
	// outputGrace is how long Done waits for the end of the output once the
	// leader has exited. The output normally ends with the leader; when a
	// member of the group (or a process that left it) still holds it open,
	// Done must not wait for that member, or a crash would go unnoticed.
	outputGrace = 500 * time.Millisecond
	// lingerPoll is how often a handle whose output outlived its leader
	// checks whether the group is gone.
	lingerPoll = 100 * time.Millisecond
)

// ExecRunner runs each process as `/bin/sh -c COMMAND` in a new process
// group, so signals reach everything the command spawned. The zero value is
// ready to use; a daemon sets Instance.
//
// Output is read line by line from two pipes (stdout, stderr) for as long as
// anything in the group holds them; the child never blocks on a full pipe
// because the readers only hand each line to out. When the leader exits
// while other members keep the output open, Done closes outputGrace later
// and reading goes on until the group is gone.
type ExecRunner struct {
	// Instance is the daemon-instance token (runtoken.NewInstance) that
	// prefixes every run's RunEnv token, so that the processes of a
	// crashed daemon can be found by it (see runtoken); "": tokens name
	// the run alone.
	Instance string
}

// dirError says which working directory is unusable. It unwraps to the
// underlying error, so errors.Is(err, fs.ErrNotExist) works.
type dirError struct {
	dir string
	err error
}

func (e *dirError) Error() string {
	switch {
	case errors.Is(e.err, fs.ErrNotExist):
		return "working directory " + e.dir + " does not exist"
	case e.err == errNotDir:
		return "working directory " + e.dir + " is not a directory"
	}
	return "working directory " + e.dir + ": " + e.err.Error()
}

func (e *dirError) Unwrap() error { return e.err }

var errNotDir = errors.New("not a directory")

// Start implements Runner.
func (r ExecRunner) Start(ctx context.Context, spec Spec, out func(Line)) (Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Checked here because exec would report a missing directory as a
	// failure to run /bin/sh, which sends people looking in the wrong place.
	if st, err := os.Stat(spec.Dir); err != nil {
		return nil, &dirError{spec.Dir, err}
	} else if !st.IsDir() {
		return nil, &dirError{spec.Dir, errNotDir}
	}
	cred, err := sysCredential(spec.Credential)
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = func(Line) {}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		_ = outR.Close() // nothing was started; the pipe is unused
		_ = outW.Close()
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	token := runtoken.New(r.Instance)
	cmd := exec.Command("/bin/sh", "-c", spec.Command)
	cmd.Dir = spec.Dir
	cmd.Env = runEnv(spec.Env, token)
	// *os.File outputs are handed to the child as they are, so exec starts
	// no copying goroutines and Wait never waits for the output.
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	t := acquireTree()
	err = t.start(cmd)
	// The child holds its own copies now. Ours must go, or the output would
	// never end.
	_ = outW.Close()
	_ = errW.Close()
	if err != nil {
		_ = outR.Close()
		_ = errR.Close()
		t.release()
		return nil, fmt.Errorf("start /bin/sh: %w", err)
	}
	h := &execHandle{pid: cmd.Process.Pid, tree: t, grp: group{leader: cmd.Process.Pid, token: token},
		done: make(chan struct{}), leaderExited: make(chan struct{})}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); readLines(outR, "stdout", out) }()
	go func() { defer readers.Done(); readLines(errR, "stderr", out) }()
	readersDone := make(chan struct{})
	go func() { readers.Wait(); close(readersDone) }()
	go h.wait(cmd, readersDone, outR, errR)
	return h, nil
}

type execHandle struct {
	pid          int
	tree         *tree
	done         chan struct{}
	leaderExited chan struct{}

	mu     sync.Mutex
	code   *int
	signal string

	grpMu    sync.Mutex // guards grp and cmdlines; held while walking the run's processes
	grp      group
	cmdlines map[int]cmdline // by pid, for the members of the last look
}

// cmdline is a member's command line, kept while the same program runs in
// the same process (pid, start time and name): it is read once, not at
// every look. An exec changes the name, which reads it again.
type cmdline struct {
	start uint64
	comm  string
	text  string
}

// wait is the only caller of cmd.Wait. It reaps the leader, closes done once
// the output has ended (or outputGrace passed), and closes the pipes once
// nobody is left to write to them. It holds the handle's reference to the
// tree until then.
func (h *execHandle) wait(cmd *exec.Cmd, readersDone <-chan struct{}, pipes ...*os.File) {
	defer h.tree.release()
	err := cmd.Wait()
	h.tree.waited(h.pid)
	h.setExit(cmd.ProcessState, err)
	close(h.leaderExited)

	grace := time.NewTimer(outputGrace)
	select {
	case <-readersDone:
	case <-grace.C:
	}
	grace.Stop()
	close(h.done)

	// Members may still write. Keep reading while the group lives, so their
	// output is kept and they never get EPIPE in the middle of a graceful
	// stop. Once the group is gone, whoever still holds the pipes has left
	// the group (setsid) and is none of our business: stop reading.
	poll := time.NewTicker(lingerPoll)
	defer poll.Stop()
	for {
		select {
		case <-readersDone:
			closeAll(pipes)
			return
		case <-poll.C:
		}
		if !h.GroupAlive() {
			t := time.NewTimer(outputGrace)
			select {
			case <-readersDone:
			case <-t.C:
			}
			t.Stop()
			closeAll(pipes) // unblocks the readers, which then return
			<-readersDone
			return
		}
	}
}

func closeAll(files []*os.File) {
	for _, f := range files {
		_ = f.Close() // read ends; nothing to flush
	}
}

func (h *execHandle) setExit(ps *os.ProcessState, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ps == nil {
		// Wait failed without a status (cannot happen after a successful
		// Start, but an unknown exit must still read as a failure).
		c := -1
		h.code = &c
		return
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		h.signal = unix.SignalName(ws.Signal())
		if h.signal == "" {
			h.signal = fmt.Sprintf("SIG%d", int(ws.Signal()))
		}
		return
	}
	c := ps.ExitCode()
	h.code = &c
}

func (h *execHandle) Pid() int              { return h.pid }
func (h *execHandle) Done() <-chan struct{} { return h.done }

func (h *execHandle) ExitStatus() (*int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.code == nil {
		return nil, h.signal
	}
	c := *h.code
	return &c, h.signal
}

// Signal sends sig to every process of the run (see tree.signal): its
// process group, and each member that left it with setsid or setpgid, so a
// daemon that double-forked is stopped with the run instead of leaking.
func (h *execHandle) Signal(sig syscall.Signal) error {
	leaderAlive := !isClosed(h.leaderExited)
	h.grpMu.Lock()
	defer h.grpMu.Unlock()
	return h.tree.signal(&h.grp, leaderAlive, sig)
}

// GroupAlive reports whether any process of the run is alive: the leader,
// a member of its process group, or a member that left the group.
func (h *execHandle) GroupAlive() bool {
	if !isClosed(h.leaderExited) {
		return true // the leader itself is alive
	}
	h.grpMu.Lock()
	defer h.grpMu.Unlock()
	return h.tree.alive(&h.grp)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// runEnv is env (complete: never nil, which would inherit ours) with
// RunEnv=token first and any other RunEnv entry dropped, so the token
// wins. First, because readers of /proc/PID/environ read a bounded prefix
// of it (procfs.EnvValue): a huge environment cannot push the token out
// of sight.
func runEnv(env []string, token string) []string {
	out := append(make([]string, 0, len(env)+1), RunEnv+"="+token)
	for _, kv := range env {
		if !strings.HasPrefix(kv, RunEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// Members walks the run's processes (see tree.members): the leader's
// descendants, members seen before and orphans handed to the daemon. It
// never reads a pid outside that set.
func (h *execHandle) Members() []Member {
	leaderAlive := !isClosed(h.leaderExited)
	h.grpMu.Lock()
	defer h.grpMu.Unlock()
	sts := h.tree.members(&h.grp, leaderAlive, shareWindow)
	page := uint64(os.Getpagesize())
	out := make([]Member, 0, len(sts))
	cmds := make(map[int]cmdline, len(sts))
	for _, st := range sts {
		c, ok := h.cmdlines[st.Pid]
		if !ok || c.start != st.StartTime || c.comm != st.Comm {
			c = cmdline{st.StartTime, st.Comm, procfs.Cmdline(st.Pid, st.Comm)}
		}
		// Only a real argv is kept: in the middle of an execve the new
		// comm is already set while the argv is not yet readable, and
		// Cmdline's fallback (the comm) must not stick for the process's
		// life. A process whose argv is its comm is read again each look.
		if c.text != c.comm {
			cmds[st.Pid] = c
		}
		out = append(out, Member{Pid: st.Pid, Command: c.text, RSSBytes: st.RSSPages * page})
	}
	h.cmdlines = cmds
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out
}

// readLines hands each line of r to out. An empty line is dropped, as the
// Node original drops it: blank lines would take the places of outputLines
// that are worth keeping. A line longer than maxLineBytes is cut there and
// the rest of it dropped; a last line without a newline is still delivered
// at the end.
func readLines(r io.Reader, stream string, out func(Line)) {
	br := bufio.NewReaderSize(r, maxLineBytes)
	skipping := false
	for {
		chunk, isPrefix, err := br.ReadLine() // a line or an error, never both
		if err != nil {
			return
		}
		if !skipping && len(chunk) > 0 {
			if isPrefix {
				chunk = trimPartialRune(chunk)
			}
			out(Line{At: time.Now().UTC(), Line: string(chunk), Stream: stream})
		}
		skipping = isPrefix
	}
}

// trimPartialRune drops a multi-byte character cut in half at the end of b,
// so a truncated line stays valid UTF-8 when its input was.
func trimPartialRune(b []byte) []byte {
	for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
		if r := b[len(b)-i]; utf8.RuneStart(r) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			return b
		}
	}
	return b
}
