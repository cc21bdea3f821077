package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// tokenEnv marks every process of one chaos run: the daemon gets it in its
// environment and passes it on to everything it starts, so the process
// table can be searched for exactly this run's processes, whoever else
// (other runs, other tests) uses the host.
const tokenEnv = "RBCHAOS_RUN"

const (
	drainTimeout = 3 * time.Second // proxy.drainTimeoutMs: short, so slow requests and WebSockets get cut
	healthWait   = 8 * time.Second // proxy.healthTimeoutMs: how long an unhealthy deploy takes to fail
	forceStop    = 3 * time.Second // proxy.forceStopTimeoutMs: from SIGTERM to SIGKILL
	// waitLimit bounds every wait for a state (a daemon answering, a
	// process replaced, the table settling). It is far above what a
	// healthy run needs on a loaded host, so it fires only on a hang.
	waitLimit = 60 * time.Second
)

// run is one chaos run: the processes under test, the load, the schedule
// and what has been observed.
type run struct {
	o        options
	rng      *mrand.Rand // the schedule's; only the main loop draws from it
	work     string
	cfgPath  string
	sock     string
	state    string
	rbd, ctl string
	app      string
	token    string
	client   *control.Client

	// The proxy's listening socket is the driver's, as systemd's socket
	// unit holds it: each daemon inherits it (LISTEN_FDS), so connections
	// wait in its backlog while no daemon runs.
	ln       *net.TCPListener
	lnFile   *os.File
	proxyURL string

	d           *daemonProc
	incarnation int
	tl          *timeline
	load        *loadGen

	mu      sync.Mutex // guards actions
	actions []string   // the last actions, newest last

	n        int               // releases made
	paths    map[string]string // release id -> directory
	active   string            // the release the driver expects to serve ("" before the first deploy)
	counts   map[string]int    // actions run, by kind
	quiet    []quietSample
	started  time.Time
	restarts int
	// knownLeaks counts processes a known defect left behind, by defect
	// (see options.known); they are reported, not judged.
	knownLeaks map[string]int
	// loopSeen is the event loop's counts at each daemon's last quiet
	// point, by incarnation, when the loop runs (ROLLBRIDGE_EVENT_LOOP).
	loopSeen map[int]control.EventLoopInfo
	knownLog []string
	logRead  map[int]int64 // bytes of each daemon's log read by readDrains
	w        *watcher
}

// daemonProc is one incarnation of rollbridged.
type daemonProc struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed once the process has been waited for
	log  *os.File
	n    int
}

func newRun(o options) (*run, error) {
	work := o.work
	var err error
	if work == "" {
		if work, err = os.MkdirTemp("", "rbchaos"); err != nil {
			return nil, fmt.Errorf("make work directory: %w", err)
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("make work directory: %w", err)
	}
	abs := func(name string) string { p, _ := filepath.Abs(filepath.Join(o.bin, name)); return p }
	tok := make([]byte, 8)
	_, _ = rand.Read(tok) // crypto/rand.Read never fails on Linux
	r := &run{
		o: o, rng: mrand.New(mrand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15)), work: work,
		cfgPath: filepath.Join(work, "rollbridge.jsonnet"), sock: filepath.Join(work, "c.sock"),
		state: filepath.Join(work, "state.json"), rbd: abs("rollbridged"), ctl: abs("rollbridgectl"), app: abs("demo-app"),
		token: hex.EncodeToString(tok), paths: map[string]string{}, logRead: map[int]int64{}, knownLeaks: map[string]int{}, counts: map[string]int{}, tl: &timeline{},
	}
	r.client = &control.Client{Path: r.sock}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bind the proxy port: %w", err)
	}
	r.ln = ln.(*net.TCPListener)
	if r.lnFile, err = r.ln.File(); err != nil {
		return nil, fmt.Errorf("proxy listener fd: %w", err)
	}
	port := r.ln.Addr().(*net.TCPAddr).Port
	r.proxyURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := os.WriteFile(r.cfgPath, []byte(r.config(port)), 0o644); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	r.load = newLoadGen(r.proxyURL, o.seed, r.tl)
	return r, nil
}

// config is the app under test: the demo app as the proxied process, which
// reads its knobs from app.env in the release directory (so each release
// can be made healthy, unhealthy, crashing or slow to boot), and workers of
// every policy, one of them with children and one that double-forks a
// process into a session of its own.
func (r *run) config(port int) string {
	return fmt.Sprintf(`{
  application: 'chaos',
  control: {path: %q, mode: '600'},
  statePath: %q,
  releaseRetention: {keep: 4},
  proxy: {host: '127.0.0.1', port: %d, drainTimeoutMs: %d, forceStopTimeoutMs: %d, healthTimeoutMs: %d},
  processes: [
    {id: 'web', policy: 'proxied', command: 'set -a; . ./app.env; set +a; exec %s --port {{port}}',
     port: {from: %d, to: %d}, health: {path: '/ping', intervalMs: 50}, restartDelayMs: 200},
    {id: 'worker', policy: 'companion', replicas: 2, restartDelayMs: 300,
     command: 'sleep 1000001 & sleep 1000002 & wait'},
    {id: 'daemonizer', policy: 'companion', restartDelayMs: 300,
     command: "(setsid sh -c 'exec sleep 1000003' &); exec sleep 1000004"},
    {id: 'scheduler', policy: 'singleton', restartDelayMs: 300, command: 'exec sleep 1000005'},
    {id: 'broker', policy: 'service', restartDelayMs: 300, command: 'exec sleep 1000006'},
  ],
}
`, r.sock, r.state, port, drainTimeout.Milliseconds(), forceStop.Milliseconds(), healthWait.Milliseconds(), r.app, r.o.portFrom, r.o.portFrom+199)
}

// boot names a release the daemon deploys before it serves.
type boot struct{ id, path string }

// startDaemon starts an incarnation of rollbridged on the driver's proxy
// socket and waits until its control socket answers (a restore or a boot
// release is done by then: the daemon serves only after them).
func (r *run) startDaemon(ctx context.Context, b *boot) error {
	r.incarnation++
	logf, err := os.OpenFile(filepath.Join(r.work, fmt.Sprintf("daemon-%02d.log", r.incarnation)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	args := []string{"-c", `export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=proxy; exec "$0" "$@"`, r.rbd, "-c", r.cfgPath}
	if b != nil {
		args = append(args, "--release-path", b.path, "--release-id", b.id, "--revision", b.id)
	}
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = append(cleanEnv(), tokenEnv+"="+r.token)
	cmd.ExtraFiles = []*os.File{r.lnFile}
	cmd.Stdout, cmd.Stderr = logf, logf
	// A group of its own: a Ctrl-C at the terminal reaches the driver,
	// which stops the daemon itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start rollbridged: %w", err)
	}
	d := &daemonProc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{}), log: logf, n: r.incarnation}
	go func() { _ = cmd.Wait(); close(d.done) }() // the exit status is read from the log when it matters
	r.d = d
	err = poll(ctx, "rollbridged to answer on its control socket", func() (bool, error) {
		select {
		case <-d.done:
			return false, fmt.Errorf("rollbridged exited at start: %s", tail(logf.Name()))
		default:
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := r.client.Status(sctx)
		return err == nil, nil
	})
	return err
}

// cleanEnv is the driver's environment without systemd's variables, which
// belong to the driver, not to the daemon it starts.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LISTEN_") || strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") || strings.HasPrefix(kv, tokenEnv+"=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// killDaemon SIGKILLs the daemon and waits until it is reaped.
func (r *run) killDaemon() {
	d := r.d
	if d == nil {
		return
	}
	_ = syscall.Kill(d.pid, syscall.SIGKILL)
	_ = syscall.Kill(d.pid, syscall.SIGCONT) // a stopped process dies only once it runs
	<-d.done
	d.log.Close()
	r.d = nil
}

// ctlResult is one rollbridgectl run.
type ctlResult struct {
	code           int
	stdout, stderr string
}

// rollbridgectl runs the real client. A non-zero exit is not an error
// here: the caller decides what it means.
func (r *run) rollbridgectl(ctx context.Context, args ...string) (ctlResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.ctl, args...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := ctlResult{stdout: out.String(), stderr: strings.TrimSpace(errb.String())}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("rollbridgectl %s: %w", args[0], err)
	}
	return res, nil
}

// deployResult reads deploy's or rollback's final answer.
func deployResult(res ctlResult) (control.DeployResult, error) {
	var out control.DeployResult
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		return out, fmt.Errorf("unreadable answer %q: %w", res.stdout, err)
	}
	return out, nil
}

// newRelease makes a release directory whose app.env sets the demo app's
// knobs (APP_HEALTH_STATUS, APP_EXIT_CODE, APP_BOOT_DELAY_MS).
func (r *run) newRelease(prefix, env string) (id, path string, err error) {
	r.n++
	id = fmt.Sprintf("%s%d", prefix, r.n)
	path = filepath.Join(r.work, "releases", id)
	if err := os.MkdirAll(path, 0o755); err != nil {
		return "", "", fmt.Errorf("release directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(path, "app.env"), []byte(env), 0o644); err != nil {
		return "", "", fmt.Errorf("release app.env: %w", err)
	}
	r.paths[id] = path
	return id, path, nil
}

// ours lists this run's live processes (those carrying the run's token),
// with the ROLLBRIDGE_RUN token the exec runner gave each managed process's
// tree ("" for the daemon and its own helpers).
func (r *run) ours() (map[int]ourProc, error) {
	pids, err := procfs.AllPids()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	out := map[int]ourProc{}
	for _, pid := range pids {
		if v, ok := procfs.EnvValue(pid, tokenEnv); !ok || v != r.token {
			continue
		}
		st, err := procfs.ReadStat(pid)
		if err != nil || !st.Live() {
			continue
		}
		runTok, _ := procfs.EnvValue(pid, "ROLLBRIDGE_RUN")
		out[pid] = ourProc{stat: st, run: runTok, cmd: procfs.Cmdline(pid, st.Comm)}
	}
	return out, nil
}

type ourProc struct {
	stat procfs.Stat
	run  string
	cmd  string
}

// killOurs SIGKILLs every process of the run but the daemon: what systemd
// does to a service's cgroup (KillMode=mixed) once its main process died.
func (r *run) killOurs() error {
	procs, err := r.ours()
	if err != nil {
		return err
	}
	for pid, p := range procs {
		if r.d != nil && pid == r.d.pid {
			continue
		}
		if procfs.Alive(pid, p.stat.StartTime) { // not recycled since the listing
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return nil
}

// cleanup leaves nothing of the run behind, whatever happened: the daemon
// and every process carrying the run's token are killed.
func (r *run) cleanup() {
	r.load.stop()
	if r.d != nil {
		r.killDaemon()
	}
	_ = r.killOurs() // listing /proc cannot fail here in practice; a failure leaves only what the checks reported
	r.ln.Close()
	r.lnFile.Close()
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// poll calls cond until it reports true or an error, ctx ends, or
// waitLimit passes (then it says what it waited for).
func poll(ctx context.Context, what string, cond func() (bool, error)) error {
	return pollFor(ctx, waitLimit, what, cond)
}

// pollFor is poll with another limit.
func pollFor(ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", limit, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // the gap between two looks; cond ends the wait
		}
	}
}
