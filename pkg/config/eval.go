package config

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A config is a program: Jsonnet can loop for ever or build a structure
// larger than the host's memory, and go-jsonnet cannot be interrupted. So
// the daemon and rollbridgectl evaluate through a Loader, which runs each
// evaluation in a child process — the same binary, re-executed in its
// evaluation mode — that sets its own memory limit before it evaluates
// and is killed when its time is up or its caller gives up (a signal, a
// client that hung up, a daemon that stops).

// The default limits of one evaluation, and the environment variables that
// change them (LimitsFromEnv). A config evaluates in milliseconds and a
// few megabytes; these catch a runaway, not a large config.
const (
	DefaultEvalTimeout = 10 * time.Second
	DefaultEvalMemory  = 512 << 20 // bytes

	EnvEvalTimeout = "ROLLBRIDGE_EVAL_TIMEOUT_MS" // whole milliseconds
	EnvEvalMemory  = "ROLLBRIDGE_EVAL_MEMORY_MB"  // whole MiB
)

// evaluatorEnv, set to "1", selects the evaluation mode of a re-executed
// binary (EvaluatorRequested).
const evaluatorEnv = "ROLLBRIDGE_CONFIG_EVALUATOR"

// Limits bound one evaluation. A zero field means its default.
type Limits struct {
	Timeout     time.Duration // wall-clock time
	MemoryBytes int64         // address space the evaluation may add
}

func (l Limits) withDefaults() Limits {
	if l.Timeout <= 0 {
		l.Timeout = DefaultEvalTimeout
	}
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = DefaultEvalMemory
	}
	return l
}

// LimitsFromEnv reads EnvEvalTimeout and EnvEvalMemory from env (unset or
// empty: the default). A value that is not a positive whole number is an
// error naming the variable.
func LimitsFromEnv(env map[string]string) (Limits, error) {
	var l Limits
	for _, v := range []struct {
		name, unit string
		set        func(n int64)
	}{
		{EnvEvalTimeout, "milliseconds", func(n int64) { l.Timeout = time.Duration(n) * time.Millisecond }},
		{EnvEvalMemory, "MiB", func(n int64) { l.MemoryBytes = n << 20 }},
	} {
		s := env[v.name]
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n > 1<<40 {
			return Limits{}, fmt.Errorf("%s=%q: must be a positive whole number of %s", v.name, s, v.unit)
		}
		v.set(n)
	}
	return l.withDefaults(), nil
}

// Loader loads configs like Load, but evaluates each in a child process
// bounded by Limits. Its zero value uses the default limits and
// re-executes the running binary, whose main must start with
//
//	if config.EvaluatorRequested() {
//		os.Exit(config.ServeEvaluation(os.Stdin, os.Stdout))
//	}
//
// A Loader is a value; it is safe for concurrent use.
type Loader struct {
	Limits Limits
	// Executable is the binary to run in evaluation mode; "" means this
	// very one (/proc/self/exe: the same program even when the file was
	// replaced by an upgrade since it started).
	Executable string
}

// Load evaluates and validates the config at path, with env as
// std.extVar('env'). An empty path means DefaultFile in the working
// directory.
//
// Errors: those of Load, and *LimitError (the evaluation ran out of time
// or memory), or ctx's error, wrapped, when ctx ended first (the child is
// killed either way).
func (l Loader) Load(ctx context.Context, path string, env map[string]string) (*Config, error) {
	abs, err := resolve(path)
	if err != nil {
		return nil, err
	}
	data, err := l.evaluate(ctx, abs, env)
	if err != nil {
		return nil, err
	}
	return Decode(data, abs)
}

// LimitError says that an evaluation was stopped at a limit.
type LimitError struct {
	Path   string
	Memory bool   // false: the time limit
	Limit  string // "10s", "512 MiB"
}

func (e *LimitError) Error() string {
	if e.Memory {
		return fmt.Sprintf("evaluate %s: stopped: it needed more than %s of memory (%s raises the limit)", e.Path, e.Limit, EnvEvalMemory)
	}
	return fmt.Sprintf("evaluate %s: stopped: it ran longer than %s (%s raises the limit)", e.Path, e.Limit, EnvEvalTimeout)
}

// evalRequest and evalAnswer cross the child's stdin and stdout.
type evalRequest struct {
	Path        string            `json:"path"`
	Env         map[string]string `json:"env"`
	MemoryBytes int64             `json:"memoryBytes"`
}

type evalAnswer struct {
	Output json.RawMessage `json:"output,omitempty"`
	Error  string          `json:"error,omitempty"` // an *EvalError's message
}

func (l Loader) evaluate(ctx context.Context, path string, env map[string]string) ([]byte, error) {
	lim := l.Limits.withDefaults()
	exe := l.Executable
	if exe == "" {
		exe = "/proc/self/exe"
	}
	req, err := json.Marshal(evalRequest{Path: path, Env: env, MemoryBytes: lim.MemoryBytes})
	if err != nil {
		return nil, fmt.Errorf("evaluate %s: %w", path, err)
	}
	tctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, exe)
	cmd.Env = append(os.Environ(), evaluatorEnv+"=1")
	cmd.Stdin = bytes.NewReader(req)
	var out bytes.Buffer
	stderr := &headWriter{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = &out, stderr
	// Killed with the caller: a child must never outlive the process that
	// waits for it (a killed rollbridgectl, a daemon the watchdog restarts).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("evaluate %s: %w", path, ctx.Err())
	case tctx.Err() != nil:
		return nil, &LimitError{Path: path, Limit: lim.Timeout.String()}
	case err != nil && outOfMemory(stderr.String()):
		return nil, &LimitError{Path: path, Memory: true, Limit: fmt.Sprintf("%d MiB", lim.MemoryBytes>>20)}
	case err != nil:
		return nil, fmt.Errorf("evaluate %s: the evaluator (%s in evaluation mode) failed: %w: %s", path, exe, err, firstLine(stderr.String()))
	}
	var ans evalAnswer
	if err := json.Unmarshal(out.Bytes(), &ans); err != nil {
		return nil, fmt.Errorf("evaluate %s: unreadable answer from the evaluator (%s in evaluation mode): %w", path, exe, err)
	}
	if ans.Error != "" {
		return nil, &EvalError{Path: path, Message: ans.Error}
	}
	return ans.Output, nil
}

// EvaluatorRequested reports whether a Loader started this process to
// evaluate a config: then main must call ServeEvaluation before anything
// else and exit with its code.
func EvaluatorRequested() bool { return os.Getenv(evaluatorEnv) == "1" }

// ServeEvaluation is the evaluation mode: it reads one request from in,
// limits this process's memory, evaluates, and writes the answer to out.
// It returns the exit code: 0 when an answer was written (also for a
// Jsonnet error, which is an answer), 1 when the request was unusable.
// Running out of memory ends the process (Go's runtime exits with "out
// of memory"), which the Loader reports as a *LimitError.
func ServeEvaluation(in io.Reader, out io.Writer) int {
	var req evalRequest
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "rollbridge config evaluator: read the request:", err)
		return 1
	}
	if err := limitMemory(req.MemoryBytes); err != nil {
		fmt.Fprintln(os.Stderr, "rollbridge config evaluator:", err)
		return 1
	}
	var ans evalAnswer
	data, err := Evaluate(req.Path, req.Env)
	var ee *EvalError
	switch {
	case errors.As(err, &ee):
		ans.Error = ee.Message
	case err != nil:
		ans.Error = err.Error()
	default:
		ans.Output = data
	}
	w := bufio.NewWriter(out)
	if err := json.NewEncoder(w).Encode(ans); err != nil {
		fmt.Fprintln(os.Stderr, "rollbridge config evaluator: write the answer:", err)
		return 1
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "rollbridge config evaluator: write the answer:", err)
		return 1
	}
	return 0
}

// limitMemory lets this process's address space grow by at most n bytes
// from its current size (RLIMIT_AS), and makes the garbage collector work
// to stay below n (a config that produces garbage but keeps little is
// fine). Counting from the current size keeps the limit about the
// evaluation, whatever the runtime reserved at start (the race detector
// reserves terabytes).
func limitMemory(n int64) error {
	if n <= 0 {
		return nil
	}
	size, err := vmSize()
	if err != nil {
		return fmt.Errorf("limit memory: %w", err)
	}
	lim := uint64(size) + uint64(n)
	if err := unix.Setrlimit(unix.RLIMIT_AS, &unix.Rlimit{Cur: lim, Max: lim}); err != nil {
		return fmt.Errorf("limit memory: setrlimit: %w", err)
	}
	debug.SetMemoryLimit(n)
	return nil
}

// vmSize is this process's virtual memory size in bytes (VmSize in
// /proc/self/status).
func vmSize() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmSize:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmSize %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmSize in /proc/self/status")
}

// headWriter keeps the first max bytes written to it: a runtime crash
// writes its cause first, then every goroutine's stack.
type headWriter struct {
	buf bytes.Buffer
	max int
}

func (w *headWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (w *headWriter) String() string { return w.buf.String() }

// outOfMemory reports whether a crashed evaluator's stderr says that it ran
// out of address space: Go's runtime says "out of memory", and in a race
// detector build "too many address space collisions".
func outOfMemory(stderr string) bool {
	return strings.Contains(stderr, "out of memory") || strings.Contains(stderr, "too many address space collisions")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
