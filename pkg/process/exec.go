package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxLine bounds one captured line; the rest of a longer line is dropped.
const maxLine = 64 << 10

// ExecRunner runs each process as `/bin/sh -c COMMAND` in a new process
// group, so a stop reaches everything the command spawned.
type ExecRunner struct{}

// Start implements Runner.
func (ExecRunner) Start(_ context.Context, spec Spec, out func(Line)) (Handle, error) {
	st, err := os.Stat(spec.Dir)
	switch {
	case err != nil && errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("working directory %s does not exist", spec.Dir)
	case err != nil:
		return nil, fmt.Errorf("working directory %s: %w", spec.Dir, err)
	case !st.IsDir():
		return nil, fmt.Errorf("working directory %s is not a directory", spec.Dir)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := exec.Command("/bin/sh", "-c", spec.Command)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	// The child has its own copies now; ours must go so EOF comes when
	// the last holder in the group exits.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start /bin/sh: %w", err)
	}
	h := &execHandle{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{}), readers: make(chan struct{})}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); readLines(outR, "stdout", out) }()
	go func() { defer readers.Done(); readLines(errR, "stderr", out) }()
	go func() {
		readers.Wait()
		outR.Close()
		errR.Close()
		close(h.readers)
	}()
	h.pipes = []*os.File{outR, errR}
	go func() {
		err := cmd.Wait() // the only Wait: it reaps the leader
		h.setExit(cmd.ProcessState, err)
		close(h.done)
	}()
	return h, nil
}

// readLines splits r into lines for out. A line longer than maxLine is cut
// there; a last line without newline is still delivered.
func readLines(r io.Reader, stream string, out func(Line)) {
	br := bufio.NewReaderSize(r, maxLine)
	skipping := false
	for {
		chunk, isPrefix, err := br.ReadLine() // a line or an error, never both
		if err != nil {
			return
		}
		if !skipping {
			out(Line{At: time.Now().UTC(), Line: string(chunk), Stream: stream})
		}
		skipping = isPrefix // drop the rest of an over-long line
	}
}

type execHandle struct {
	cmd     *exec.Cmd
	pid     int
	done    chan struct{}
	readers chan struct{}
	pipes   []*os.File

	mu     sync.Mutex
	code   *int
	signal string
}

func (h *execHandle) setExit(ps *os.ProcessState, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ps == nil {
		c := -1
		h.code = &c
		return
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		h.signal = unix.SignalName(ws.Signal())
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
	return h.code, h.signal
}

func (h *execHandle) Signal(sig syscall.Signal) error {
	err := syscall.Kill(-h.pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil // nobody left to signal
	}
	return err
}

func (h *execHandle) GroupAlive() bool { return groupAlive(h.pid) }

func (h *execHandle) Members() []Member {
	m, _ := groupMembers(h.pid, true)
	return m
}

// Close waits up to a second for the output readers: a process outside the
// group may still hold the pipes (it escaped with setsid); we stop reading then.
func (h *execHandle) Close() {
	select {
	case <-h.readers:
	case <-time.After(time.Second):
		for _, f := range h.pipes {
			_ = f.Close() // unblocks the readers; they exit on the error
		}
		<-h.readers
	}
}
