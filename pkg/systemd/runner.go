package systemd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/coreos/go-systemd/v22/unit"
	"github.com/godbus/dbus/v5"

	"github.com/rollbridge/rollbridge-go/internal/runtoken"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// Journal fields every unit's entries carry, beside SYSLOG_IDENTIFIER (the
// instance id). They are the fields the daemon's own entries carry, so one
// journalctl match finds both.
const (
	fieldApplication = "ROLLBRIDGE_APPLICATION"
	fieldRelease     = "ROLLBRIDGE_RELEASE_ID"
	fieldProcess     = "ROLLBRIDGE_PROCESS_ID"
	fieldInstance    = "ROLLBRIDGE_INSTANCE_ID"
	fieldPolicy      = "ROLLBRIDGE_POLICY"
)

// RunnerOptions configure NewRunner.
type RunnerOptions struct {
	// Application names the slice (rollbridge-APP.slice) and every unit.
	Application string
	// DaemonUnit is the daemon's own unit (rollbridge@APP.service) when it
	// runs as one: every process unit is ordered Before= it, so at poweroff
	// the daemon stops first and runs the stop sequence on each of them.
	DaemonUnit string
	// EnvDir holds the short-lived 0600 environment files (one per spawn,
	// removed once the unit has started). It is created 0700 when missing.
	EnvDir string
	// Instance is the daemon-instance token (runtoken.NewInstance): every
	// unit gets ROLLBRIDGE_RUN=runtoken.New(Instance), as the exec
	// runner's runs do, so rollbridgectl recover finds a crashed daemon's
	// processes the same way whichever runner started them.
	Instance string
}

// Runner starts each process instance as a transient service unit over
// D-Bus, in the application's slice, with its output in the journal. The
// units belong to systemd, not to the daemon: they outlive it, and the next
// daemon attaches to them again with Adopt. Create it with NewRunner and
// Close it when done (closing leaves the units running). It is safe for
// concurrent use.
type Runner struct {
	conn   *sdbus.Conn
	app    string
	slice  string
	daemon string
	envDir string
	inst   string
	cg     cgroupFS
	follow *follower
	// derived says whether attach may derive a unit's cgroup and
	// invocation id instead of asking systemd (derivedUnknown, -Yes, -No).
	derived atomic.Int32

	// late counts the lateJobResult readers, which Close ends (closed)
	// and waits for.
	late   sync.WaitGroup
	closed chan struct{}

	mu      sync.Mutex
	names   map[string]*nameLock // per unit name: a start and a release take turns
	pidfds  map[*os.File]struct{}
	closing bool
}

type nameLock struct {
	mu   sync.Mutex
	refs int
}

func (r *Runner) lockName(name string) {
	r.mu.Lock()
	l := r.names[name]
	if l == nil {
		l = &nameLock{}
		r.names[name] = l
	}
	l.refs++
	r.mu.Unlock()
	l.mu.Lock()
}

func (r *Runner) unlockName(name string) {
	r.mu.Lock()
	l := r.names[name]
	l.refs--
	if l.refs == 0 {
		delete(r.names, name)
	}
	r.mu.Unlock()
	l.mu.Unlock()
}

// track remembers a handle's pidfd, so Close can end its watcher.
func (r *Runner) track(f *os.File) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pidfds[f] = struct{}{}
}

// untrack forgets f and reports whether the runner is closing.
func (r *Runner) untrack(f *os.File) (closing bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pidfds, f)
	return r.closing
}

// Slice is the slice that holds every unit of application app.
func Slice(app string) string { return "rollbridge-" + unit.UnitNameEscape(app) + ".slice" }

// UnitName is the unit of one process instance: application, release and
// instance id, each escaped the way systemd-escape does (so "worker#2"
// becomes worker\x232 and a "-" inside an id cannot be mistaken for a
// separator).
//
// A daemon-wide process (service, singleton) has no release in its name:
// releaseID is "".
func UnitName(app, releaseID, instanceID string) string {
	if releaseID == "" {
		return "rollbridge-" + unit.UnitNameEscape(app) + "-" + unit.UnitNameEscape(instanceID) + ".service"
	}
	return "rollbridge-" + unit.UnitNameEscape(app) + "-" + unit.UnitNameEscape(releaseID) + "-" + unit.UnitNameEscape(instanceID) + ".service"
}

// NewRunner connects to systemd and starts following the slice's journal
// (one journalctl for every unit of the application).
func NewRunner(ctx context.Context, o RunnerOptions) (*Runner, error) {
	if o.Application == "" {
		return nil, errors.New("systemd runner: no application name")
	}
	if o.EnvDir == "" {
		o.EnvDir = "/run/rollbridge/" + o.Application
	}
	if err := os.MkdirAll(o.EnvDir, 0o700); err != nil {
		return nil, fmt.Errorf("systemd runner: environment directory: %w", err)
	}
	// MkdirAll leaves an existing directory alone; its mode must not be.
	if err := os.Chmod(o.EnvDir, 0o700); err != nil {
		return nil, fmt.Errorf("systemd runner: environment directory: %w", err)
	}
	// The connection lives as long as the runner: godbus closes a
	// connection when the context it was opened with ends.
	conn, err := sdbus.NewWithContext(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("systemd runner: connect to systemd over D-Bus: %w", err)
	}
	r := &Runner{conn: conn, app: o.Application, slice: Slice(o.Application), daemon: o.DaemonUnit,
		envDir: o.EnvDir, inst: o.Instance, cg: detectCgroupFS(), closed: make(chan struct{}),
		names: map[string]*nameLock{}, pidfds: map[*os.File]struct{}{}}
	f, err := startFollower(r.app)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("systemd runner: %w", err)
	}
	r.follow = f
	return r, nil
}

// Close stops following the journal and closes the D-Bus connection. The
// units keep running.
func (r *Runner) Close() {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return
	}
	r.closing = true
	for f := range r.pidfds {
		_ = f.Close() // wakes its watcher, which then reads the unit's state once more
	}
	r.mu.Unlock()
	close(r.closed)
	r.late.Wait()
	r.follow.close()
	r.conn.Close()
}

// Start implements process.Runner: it starts spec as the transient unit
// UnitName(application, spec's releaseId field, spec.ID) and waits for the
// start job. Lines the unit writes to the journal reach out from the
// journal follower, so they may arrive a little after the fact.
func (r *Runner) Start(ctx context.Context, spec process.Spec, out func(process.Line)) (process.Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// As in process.ExecRunner: a missing directory would otherwise read
	// as a failure of /bin/sh.
	if st, err := os.Stat(spec.Dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("working directory %s does not exist: %w", spec.Dir, err)
		}
		return nil, fmt.Errorf("working directory %s: %w", spec.Dir, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("working directory %s is not a directory", spec.Dir)
	}
	// A memory replacement of the proxied process runs beside the copy it
	// replaces until that one has drained (same release, same instance
	// id): when the first name is held by a live unit, the next is tried.
	// Every other process has one name, and a live unit there is an error.
	for i := 0; ; i++ {
		name := r.unitName(spec, i)
		h, err := r.startAs(ctx, spec, name, out)
		if errors.Is(err, errUnitLive) && i+1 < r.nameCount(spec) {
			continue
		}
		return h, err
	}
}

// errUnitLive is wrapped by clear when the unit of the name still runs.
var errUnitLive = errors.New("the unit still runs")

// startAs is Start under the unit name name.
func (r *Runner) startAs(ctx context.Context, spec process.Spec, name string, out func(process.Line)) (process.Handle, error) {
	// Held until the run is attached, so the release of an earlier run of
	// the same name (see unitHandle.release) cannot stop this one.
	r.lockName(name)
	defer r.unlockName(name)
	// The token goes last: in an environment file the last value wins.
	env := append(append(make([]string, 0, len(spec.Env)+1), spec.Env...), process.RunEnv+"="+runtoken.New(r.inst))
	envFile, err := r.writeEnv(name, env)
	if err != nil {
		return nil, err
	}
	// systemd (the manager, before it forks) reads the file as part of
	// the start job: once the job is over it is no longer needed, and
	// nothing secret stays on disk.
	defer os.Remove(envFile)
	var rt *route
	if out != nil {
		rt = r.follow.route(name, out)
	}
	props, err := r.properties(spec, envFile)
	if err == nil {
		err = r.startJob(ctx, name, props, out)
	}
	if isUnitExists(err) {
		// The unit of an earlier run is still loaded (it keeps its exit
		// status until released); clear it and try once more. Trying
		// first keeps the common start at one round trip.
		if err = r.clear(ctx, name); err == nil {
			err = r.startJob(ctx, name, props, out)
		}
	}
	if err != nil {
		r.follow.unroute(name, rt, 0)
		// A failed start can leave a failed unit behind; it must not block
		// the next try under the same name.
		_ = r.conn.ResetFailedUnitContext(context.WithoutCancel(ctx), name) // best effort: maybe nothing to reset
		return nil, err
	}
	h, err := r.attach(ctx, name, rt, true)
	if err != nil {
		r.follow.unroute(name, rt, 0)
		return nil, err
	}
	return h, nil
}

// Adopt attaches to the live unit of spec (as Start would have named it)
// that an earlier daemon started, or to the unit name when it is not ""
// (one of the application's units, as Runs lists them). It returns
// process.ErrNotRunning when that unit does not run (any more). Its recent
// output (up to the spec's OutputLines) is handed to out first, then new
// lines as they come.
func (r *Runner) Adopt(ctx context.Context, spec process.Spec, name string, out func(process.Line)) (process.Handle, error) {
	if name != "" {
		props, err := r.conn.GetUnitTypePropertiesContext(ctx, name, "Service")
		if err != nil {
			return nil, fmt.Errorf("adopt %s: %w", name, err)
		}
		if pid, _ := props["MainPID"].(uint32); pid == 0 {
			return nil, fmt.Errorf("adopt %s: %w", name, process.ErrNotRunning)
		}
		// Only a unit of this application that runs spec's instance: a
		// name handed in must not attach the daemon to another unit.
		if s, _ := props["Slice"].(string); s != r.slice || !hasField(props, fieldInstance, spec.ID) {
			return nil, fmt.Errorf("adopt %s: not a unit of %s running %s", name, r.slice, spec.ID)
		}
		return r.adoptUnit(ctx, spec, name, out)
	}
	// Of the names the spec may run under (see Start), the live unit that
	// started last: a replacement of the proxied process is newer than
	// the copy it replaced.
	newest := uint64(0)
	for i := 0; i < r.nameCount(spec); i++ {
		n := r.unitName(spec, i)
		props, err := r.conn.GetUnitTypePropertiesContext(ctx, n, "Service")
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("adopt %s: %w", n, err)
			}
			continue
		}
		pid, _ := props["MainPID"].(uint32)
		if pid == 0 || !hasField(props, fieldInstance, spec.ID) {
			continue
		}
		if at, _ := props["ExecMainStartTimestamp"].(uint64); name == "" || at > newest {
			name, newest = n, at
		}
	}
	if name == "" {
		return nil, fmt.Errorf("adopt %s: %w", r.unitName(spec, 0), process.ErrNotRunning)
	}
	return r.adoptUnit(ctx, spec, name, out)
}

// adoptUnit attaches to the live unit name, which runs spec.
func (r *Runner) adoptUnit(ctx context.Context, spec process.Spec, name string, out func(process.Line)) (process.Handle, error) {
	var rt *route
	if out != nil {
		n := spec.OutputLines
		if n <= 0 {
			n = 50
		}
		for _, l := range recentLines(ctx, name, n) {
			out(l)
		}
		rt = r.follow.route(name, out)
	}
	h, err := r.attach(ctx, name, rt, false)
	if err != nil {
		r.follow.unroute(name, rt, 0)
		return nil, fmt.Errorf("adopt %s: %w", name, err)
	}
	return h, nil
}

// unitName names spec's unit. Services and singletons are daemon-wide
// (one at a time per id, whatever release they were last refreshed to),
// so their names leave the release out: the next daemon finds them by id.
//
// The proxied process has a second and a third name, for its replacement
// (see Start): the i-th name (i > 0) ends in ":i+1" before ".service".
// ROLLBRIDGE_INSTANCE_ID, not the name, says which instance a unit runs.
func (r *Runner) unitName(spec process.Spec, i int) string {
	var name string
	switch spec.Fields[events.KeyPolicy] {
	case "service", "singleton":
		name = UnitName(r.app, "", spec.ID)
	default:
		rel, _ := spec.Fields[events.KeyReleaseID].(string)
		name = UnitName(r.app, rel, spec.ID)
	}
	if i > 0 {
		name = strings.TrimSuffix(name, ".service") + ":" + strconv.Itoa(i+1) + ".service"
	}
	return name
}

// nameCount is how many unit names spec may run under (see unitName).
func (r *Runner) nameCount(spec process.Spec) int {
	if spec.Fields[events.KeyPolicy] == "proxied" {
		return 3
	}
	return 1
}

// hasField reports whether the unit's LogExtraFields has key=value.
func hasField(props map[string]any, key, value string) bool {
	fields, _ := props["LogExtraFields"].([][]byte)
	for _, f := range fields {
		if string(f) == key+"="+value {
			return true
		}
	}
	return false
}

// properties are the transient unit's settings. Restarts stay with the
// daemon's restart policy (Restart=no); RemainAfterExit keeps the unit,
// and with it the exit status, loaded after the main process is gone, and
// leaves what it left behind to the stop sequence, as the exec runner does.
// The config's unit settings (sandbox.go) come last; the error is theirs.
func (r *Runner) properties(spec process.Spec, envFile string) ([]sdbus.Property, error) {
	rel, _ := spec.Fields[events.KeyReleaseID].(string)
	base, _ := spec.Fields[events.KeyBaseID].(string)
	if base == "" {
		base = spec.ID
	}
	policy, _ := spec.Fields[events.KeyPolicy].(string)
	extra := [][]byte{
		[]byte(fieldApplication + "=" + r.app),
		[]byte(fieldRelease + "=" + rel),
		[]byte(fieldPolicy + "=" + policy),
		[]byte(fieldProcess + "=" + base),
		[]byte(fieldInstance + "=" + spec.ID),
	}
	sig := spec.StopSignal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	props := []sdbus.Property{
		sdbus.PropDescription(fmt.Sprintf("rollbridge %s release %s process %s", r.app, rel, spec.ID)),
		sdbus.PropSlice(r.slice),
		// simple: the start job ends once systemd has forked, like the exec
		// runner's spawn; a command that exits at once has still started
		// (exec would turn that into a failed start).
		sdbus.PropType("simple"),
		sdbus.PropRemainAfterExit(true),
		// The command is the shell's to read, so systemd must not expand
		// $VAR in it first: "$$" is its escape for "$". (ExecStartEx's
		// no-env-expand flag would say the same, but systemd 252 writes
		// it into the transient unit file in a form it cannot read back
		// at the next daemon-reload, and the unit then loses its command.)
		sdbus.PropExecStart([]string{"/bin/sh", "-c", strings.ReplaceAll(spec.Command, "$", "$$")}, false),
		prop("WorkingDirectory", spec.Dir),
		prop("EnvironmentFiles", []struct {
			Path     string
			Optional bool
		}{{envFile, false}}),
		prop("StandardOutput", "journal"),
		prop("StandardError", "journal"),
		prop("SyslogIdentifier", spec.ID),
		prop("LogExtraFields", extra),
		prop("KillSignal", int32(sig)),
		// When the main process fails, systemd ends the rest of the unit:
		// the stop signal, then SIGKILL after the grace period, the same
		// as the exec runner does after a crash.
		prop("TimeoutStopUSec", unitStopTimeout(spec.GracefulStop)),
		prop("SendSIGKILL", spec.GracefulStop >= 0),
		prop("MemoryAccounting", true),
	}
	if m := spec.Memory; m != nil && m.MaxBytes > 0 {
		props = append(props, prop("MemoryMax", m.MaxBytes))
	}
	if c := spec.Credential; c != nil {
		// By number: the supervisor resolved the names already, and the
		// unit must run as exactly what it resolved.
		props = append(props, prop("User", strconv.FormatUint(uint64(c.UID), 10)), prop("Group", strconv.FormatUint(uint64(c.GID), 10)))
	}
	if r.daemon != "" {
		props = append(props, sdbus.PropBefore(r.daemon))
	}
	settings, err := unitSettingProperties(spec)
	if err != nil {
		return nil, err
	}
	return append(props, settings...), nil
}

// unitStopTimeout is TimeoutStopUSec for a grace period: infinity for
// process.Indefinite (never SIGKILL), at least a millisecond otherwise
// (0 would mean systemd's default).
func unitStopTimeout(grace time.Duration) uint64 {
	if grace < 0 {
		return math.MaxUint64
	}
	return uint64(max(grace, time.Millisecond).Microseconds())
}

func prop(name string, v any) sdbus.Property {
	return sdbus.Property{Name: name, Value: dbus.MakeVariant(v)}
}

// isUnitExists reports systemd's answer to a transient unit whose name is
// taken (org.freedesktop.systemd1.UnitExists).
func isUnitExists(err error) bool {
	const name = "org.freedesktop.systemd1.UnitExists"
	var de dbus.Error // godbus hands out both forms
	var dp *dbus.Error
	return (errors.As(err, &de) && de.Name == name) || (errors.As(err, &dp) && dp.Name == name)
}

// startJob starts the transient unit and returns once its main process
// exists, or with the start job's error.
//
// With Type=simple, systemd ends the start job in the same step as it
// forks the main process into the unit's cgroup; the job's JobRemoved
// signal then travels through dbus-daemon to the daemon, 4-6 ms later at a
// load of 30 (BenchmarkStartSeenBeforeJobRemoved, docs/performance.md). So where the
// unit's cgroup can be watched (see populatedWatch), the process arriving
// there ends the wait as well, whichever comes first; the job's result is
// then read off the start path (see lateJobResult). A job that fails does
// so before any process exists (systemd could not set the unit up: its
// environment file, user, cgroup), so its result still ends the wait, with
// systemd's reason.
func (r *Runner) startJob(ctx context.Context, name string, props []sdbus.Property, out func(process.Line)) error {
	var w *populatedWatch
	if r.derived.Load() == derivedYes {
		w = r.cg.watchPopulated(unitCgroup(r.slice, name))
	}
	defer func() { w.Stop() }() // nil once lateJobResult took it over
	var populated <-chan struct{}
	if w != nil {
		populated = w.Ready()
	}
	ch := make(chan string, 1)
	if _, err := r.conn.StartTransientUnitContext(ctx, name, "fail", props, ch); err != nil {
		return fmt.Errorf("start unit %s: %w", name, err)
	}
	select {
	case res := <-ch:
		return r.jobError(ctx, name, res)
	case <-populated:
		// Counted under mu, so a Close under way (which waits for the
		// count) either sees this reader or makes us skip it.
		r.mu.Lock()
		closing := r.closing
		if !closing {
			r.late.Add(1)
		}
		r.mu.Unlock()
		if !closing {
			// The watch has done its work: waiting for its reader to end
			// and its descriptor to close (a median of 11 ms at a load of
			// 8 on the 2-core test VM, docs/performance.md) is left to
			// that goroutine, off the start path; Close waits for it.
			go r.lateJobResult(name, ch, out, w)
			w = nil
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("start unit %s: %w", name, ctx.Err())
	}
}

// jobError is the error of a start job that ended with result res (nil
// for "done").
func (r *Runner) jobError(ctx context.Context, name, res string) error {
	if res == "done" {
		return nil
	}
	return fmt.Errorf("start unit %s: job %s%s (see journalctl -u %s)", name, res, r.failReason(ctx, name), name)
}

// lateJobResult reads the result of a start job whose main process Start
// has already seen (see startJob). systemd ended that job as "done" in the
// same step as the fork; should it say otherwise, the run's output says so
// (a line on stderr, in the logs), beside the exit the watcher reports
// once systemd has ended the unit.
func (r *Runner) lateJobResult(name string, ch <-chan string, out func(process.Line), w *populatedWatch) {
	defer r.late.Done()
	w.Stop()
	t := time.NewTimer(exitRecordWait)
	defer t.Stop()
	select {
	case res := <-ch:
		if err := r.jobError(context.Background(), name, res); err != nil && out != nil {
			out(process.Line{At: time.Now(), Line: "rollbridge: " + err.Error(), Stream: "stderr"})
		}
	case <-t.C:
	case <-r.closed:
	}
}

// failReason is systemd's reason for a failed start of unit name, its
// Result, read only once the start has failed (so the start path pays
// nothing for it), as ": result X (meaning)", or "" when unknown.
func (r *Runner) failReason(ctx context.Context, name string) string {
	p, err := r.conn.GetUnitTypePropertyContext(context.WithoutCancel(ctx), name, "Service", "Result")
	if err != nil {
		return ""
	}
	res, _ := p.Value.Value().(string)
	if res == "" || res == "success" {
		return ""
	}
	if m := resultMeaning(res); m != "" {
		return fmt.Sprintf(": result %s (%s)", res, m)
	}
	return ": result " + res
}

// resultMeaning says what a service's Result means where a failed start
// job can end in it ("" for the others).
func resultMeaning(res string) string {
	switch res {
	case "resources":
		return "systemd could not set up the process: its environment file, working directory, user or cgroup"
	case "start-limit-hit":
		return "started too often in too short a time"
	case "exit-code":
		return "the process exited at once with an error"
	case "signal":
		return "the process was killed at once"
	case "oom-kill":
		return "killed for lack of memory"
	case "protocol":
		return "the service did not start the way its type requires"
	}
	return ""
}

// clear makes name free for a new unit: the unit of a previous run that
// has exited (still loaded for its exit status) is stopped or reset. A
// unit that still runs is an error: two copies must never overlap.
func (r *Runner) clear(ctx context.Context, name string) error {
	deadline := time.Now().Add(killWaitUnit)
	for {
		props, err := r.conn.GetUnitPropertiesContext(ctx, name)
		if err != nil {
			return fmt.Errorf("unit %s: %w", name, err)
		}
		load, _ := props["LoadState"].(string)
		active, _ := props["ActiveState"].(string)
		sub, _ := props["SubState"].(string)
		switch {
		case load == "not-found" || (active == "inactive" && load != "loaded"):
			return nil
		case active == "failed":
			_ = r.conn.ResetFailedUnitContext(ctx, name) // gone already is as good
		case active == "inactive":
			// Loaded but inactive: garbage collection removes it soon.
		case active == "active" && sub == "exited" && r.cgroupEmpty(ctx, name):
			ch := make(chan string, 1)
			if _, err := r.conn.StopUnitContext(ctx, name, "replace", ch); err == nil {
				select {
				case <-ch:
				case <-ctx.Done():
					return fmt.Errorf("unit %s: stop: %w", name, ctx.Err())
				}
			}
		case active == "deactivating":
			// systemd is ending what a crashed run left: wait for it.
		default:
			return fmt.Errorf("unit %s is already %s (%s); stop it first (systemctl stop %s): %w", name, active, sub, name, errUnitLive)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("unit %s is still %s (%s) after %v", name, active, sub, killWaitUnit)
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("unit %s: %w", name, ctx.Err())
		}
	}
}

// killWaitUnit bounds how long a start waits for an earlier unit of the
// same name to go away.
const killWaitUnit = 15 * time.Second

func (r *Runner) cgroupEmpty(ctx context.Context, name string) bool {
	p, err := r.conn.GetUnitTypePropertyContext(ctx, name, "Service", "ControlGroup")
	if err != nil {
		return false
	}
	cg, _ := p.Value.Value().(string)
	return cg == "" || len(r.cg.procs(cg)) == 0
}

// writeEnv writes env to a new 0600 file in the runner's directory, in the
// EnvironmentFile= syntax, and returns its path. Values are double-quoted
// with \, ", ` and $ escaped, so any value (newlines too) arrives as given.
// Names systemd would reject (not [A-Za-z_][A-Za-z0-9_]*) are left out.
func (r *Runner) writeEnv(name string, env []string) (string, error) {
	var b strings.Builder
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !validEnvName(k) {
			continue
		}
		b.WriteString(k)
		b.WriteString(`="`)
		for _, c := range v {
			switch c {
			case '\\', '"', '`', '$':
				b.WriteByte('\\')
			}
			b.WriteRune(c)
		}
		b.WriteString("\"\n")
	}
	// No backslash in the name (an escaped unit name has them): systemd
	// writes the path into the unit's drop-in, and reading it back would
	// unescape it into another path.
	f, err := os.CreateTemp(r.envDir, strings.NewReplacer(`\`, "_").Replace(strings.TrimSuffix(name, ".service"))+".*.env")
	if err != nil {
		return "", fmt.Errorf("environment file: %w", err)
	}
	// CreateTemp makes the file 0600 already; the content is written only
	// after that, so no one else can read it at any moment. No fsync: the
	// file lives for one start job (systemd reads it before it forks, and
	// it is removed after), on /run's tmpfs by default; after a crash
	// there is no job left to read it.
	if _, err := f.WriteString(b.String()); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("environment file: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("environment file: %w", err)
	}
	return f.Name(), nil
}

func validEnvName(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		if c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// AppUnit is a unit found in an application's slice.
type AppUnit struct {
	Name        string
	ReleaseID   string // from its ROLLBRIDGE_RELEASE_ID field
	ProcessID   string // base id
	InstanceID  string
	Policy      string
	ActiveState string
	SubState    string
	MainPID     int // 0 when its main process is gone
	// KillSignal and TimeoutStop are the unit's stop settings, set from
	// the spec's stop signal and grace period at its start (see
	// properties); TimeoutStop is process.Indefinite for infinity.
	KillSignal  syscall.Signal
	TimeoutStop time.Duration
}

// Units lists the units in the application's slice (rollbridge-APP.slice)
// with the identity their LogExtraFields carry. A daemon uses it at start
// to find what its predecessor left running.
func (r *Runner) Units(ctx context.Context) ([]AppUnit, error) {
	return listAppUnits(ctx, r.conn, r.app)
}

// Runs implements process.Adopter: the units of the application's slice
// that are still active.
func (r *Runner) Runs(ctx context.Context) ([]process.RunRef, error) {
	units, err := r.Units(ctx)
	if err != nil {
		return nil, err
	}
	var out []process.RunRef
	for _, u := range units {
		if u.ActiveState != "active" && u.ActiveState != "activating" && u.ActiveState != "deactivating" && u.ActiveState != "reloading" {
			continue
		}
		rel := u.ReleaseID
		if u.Policy == "service" || u.Policy == "singleton" {
			rel = "" // daemon-wide: its release is only the template it was started from
		}
		out = append(out, process.RunRef{Name: u.Name, ReleaseID: rel, ProcessID: u.ProcessID, InstanceID: u.InstanceID, Policy: u.Policy,
			Pid: u.MainPID, StopSignal: u.KillSignal, GracefulStop: u.TimeoutStop})
	}
	return out, nil
}

func listAppUnits(ctx context.Context, conn *sdbus.Conn, app string) ([]AppUnit, error) {
	prefix := "rollbridge-" + unit.UnitNameEscape(app) + "-"
	all, err := conn.ListUnitsByPatternsContext(ctx, nil, []string{prefix + "*.service"})
	if err != nil {
		return nil, fmt.Errorf("list units of %s: %w", Slice(app), err)
	}
	var out []AppUnit
	for _, u := range all {
		props, err := conn.GetUnitTypePropertiesContext(ctx, u.Name, "Service")
		if err != nil {
			continue // gone between the two calls
		}
		if s, _ := props["Slice"].(string); s != Slice(app) {
			continue
		}
		au := AppUnit{Name: u.Name, ActiveState: u.ActiveState, SubState: u.SubState}
		if pid, ok := props["MainPID"].(uint32); ok {
			au.MainPID = int(pid)
		}
		if sig, ok := props["KillSignal"].(int32); ok {
			au.KillSignal = syscall.Signal(sig)
		}
		if us, ok := props["TimeoutStopUSec"].(uint64); ok {
			au.TimeoutStop = process.Indefinite
			if us != math.MaxUint64 {
				au.TimeoutStop = time.Duration(us) * time.Microsecond
			}
		}
		if fields, ok := props["LogExtraFields"].([][]byte); ok {
			for _, f := range fields {
				k, v, _ := strings.Cut(string(f), "=")
				switch k {
				case fieldRelease:
					au.ReleaseID = v
				case fieldProcess:
					au.ProcessID = v
				case fieldInstance:
					au.InstanceID = v
				case fieldPolicy:
					au.Policy = v
				}
			}
		}
		out = append(out, au)
	}
	return out, nil
}

// StopSlice stops every unit of the application at once (systemd's own
// stop: KillSignal, then SIGKILL after the unit's timeout; no lifecycle
// hooks). It is the backstop for a `systemctl stop` that finds no daemon to
// run the stop sequence.
func StopSlice(ctx context.Context, app string) error {
	conn, err := sdbus.NewWithContext(ctx)
	if err != nil {
		return fmt.Errorf("stop %s: connect to systemd over D-Bus: %w", Slice(app), err)
	}
	defer conn.Close()
	ch := make(chan string, 1)
	if _, err := conn.StopUnitContext(ctx, Slice(app), "replace", ch); err != nil {
		return fmt.Errorf("stop %s: %w", Slice(app), err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("stop %s: job %s", Slice(app), res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", Slice(app), ctx.Err())
	}
}

// ProcessRuntime is the runner the daemon uses for cfg.Runtime, and the
// systemd Runner behind it (nil for the exec runtime), which the caller
// closes at exit. auto picks systemd when the daemon runs as a systemd
// service (INVOCATION_ID is set and systemd is booted) and D-Bus answers,
// else exec; systemd insists and fails when D-Bus does not answer.
// daemonUnit is the daemon's own unit, "" when it runs outside systemd;
// instance is the daemon-instance token either runner tags its runs with.
func ProcessRuntime(ctx context.Context, cfg *config.Config, daemonUnit, instance string) (process.Runner, *Runner, error) {
	execRunner := process.ExecRunner{Instance: instance}
	switch cfg.Runtime {
	case config.RuntimeExec:
		return execRunner, nil, nil
	case config.RuntimeAuto, "":
		if os.Getenv("INVOCATION_ID") == "" || !Booted() {
			return execRunner, nil, nil
		}
	}
	r, err := NewRunner(ctx, RunnerOptions{Application: cfg.Application, DaemonUnit: daemonUnit, Instance: instance})
	if err != nil {
		if cfg.Runtime == config.RuntimeSystemd {
			return nil, nil, fmt.Errorf("runtime systemd: %w", err)
		}
		return execRunner, nil, nil
	}
	return r, r, nil
}

// DaemonRestarting reports whether the daemon's own unit is being
// restarted (`systemctl restart`: its Job is a restart job) rather than
// stopped. No unit, no job or no answer over D-Bus reads as a stop, the
// safe side: processes are stopped gracefully rather than left behind.
func (r *Runner) DaemonRestarting(ctx context.Context) bool {
	if r.daemon == "" {
		return false
	}
	jobs, err := r.conn.ListJobsContext(ctx)
	if err != nil {
		return false
	}
	for _, j := range jobs {
		if j.Unit == r.daemon {
			return j.JobType == "restart" || j.JobType == "try-restart" || j.JobType == "reload-or-start"
		}
	}
	return false
}

// AfterStop runs when the units anchor of app stops (see
// packaging/systemd/rollbridge-units@.service): on a stop job — `systemctl
// stop rollbridge@APP` — it stops the application's slice, so the app is
// stopped even when no daemon was alive to run the stop sequence (a live
// daemon has stopped every unit by then, and this does nothing). On a
// restart job it leaves everything running. anchor is that unit's name.
func AfterStop(ctx context.Context, app, anchor string) (stopped bool, err error) {
	conn, err := sdbus.NewWithContext(ctx)
	if err != nil {
		return false, fmt.Errorf("connect to systemd over D-Bus: %w", err)
	}
	defer conn.Close()
	jobs, err := conn.ListJobsContext(ctx)
	if err != nil {
		return false, fmt.Errorf("list jobs: %w", err)
	}
	for _, j := range jobs {
		if j.Unit == anchor && j.JobType == "stop" {
			return true, StopSlice(ctx, app)
		}
	}
	return false, nil
}
