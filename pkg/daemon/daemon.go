package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/runtoken"
	"github.com/rollbridge/rollbridge-go/pkg/accesslog"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/metrics"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"github.com/rollbridge/rollbridge-go/pkg/supervisor"
)

// Options configure Run. Config is required.
type Options struct {
	Config *config.Config
	// Env is the daemon's environment (templates, process env); nil means os.Environ.
	Env map[string]string
	// Stdout receives one JSON line per event unless Outputs replaces it.
	Stdout io.Writer
	// Outputs, when set, replace the JSON-lines output (the journal, say).
	Outputs []events.Output
	// AccessLog writes access log entries (config accessLog); nil writes
	// them as JSON lines to Stdout. Set it beside Outputs (the journal).
	AccessLog func(accesslog.Entry)
	// ProcessOutput receives every managed process's output line.
	ProcessOutput func(fields map[string]any, l process.Line)
	// Listeners passed in by socket activation; nil ones are bound here.
	Listeners Listeners
	// Version is reported by status.
	Version string
	// Notifier receives sd_notify messages; nil means none.
	Notifier Notifier
	// WatchdogInterval, when positive, is how often the daemon pings
	// Notifier.Watchdog — only after a liveness probe of its core passed.
	WatchdogInterval time.Duration
	// Runner runs the managed processes; nil means process.ExecRunner
	// with Instance. A process.Adopter (systemd units) makes a starting
	// daemon adopt what its predecessor left running instead of restoring
	// from scratch.
	Runner process.Runner
	// Instance is this daemon's instance token (runtoken.NewInstance),
	// which Runner must put in every run's ROLLBRIDGE_RUN
	// (runtoken.New(Instance)); the state file records it before any
	// process starts, so rollbridgectl recover finds every process of a
	// daemon that crashed. "" makes a new one, for the default Runner.
	Instance string
	// KeepProcesses is asked when ctx ends Run (a signal; not the shutdown
	// command). true leaves every managed process running, for the next
	// daemon to adopt: a `systemctl restart` of the daemon. nil or false
	// stops them, as always.
	KeepProcesses func() bool
	// Reload delivers SIGHUPs. LoadConfig re-reads the config for them and
	// at the start of every deploy and rollback; nil means neither re-reads.
	// It must return promptly once its ctx ends (a config.Loader does): a
	// reload runs beside the daemon's main loop, and a stop cancels it.
	Reload     <-chan struct{}
	LoadConfig func(ctx context.Context) (*config.Config, error)
	// Boot, when set and valid, is deployed before the control socket is
	// served — unless the state file restored its own active release, or
	// recorded processes that still run. If it fails to start, Run stops
	// what it started and returns the error.
	Boot *BootRelease
	// Handover, when set, parks upgraded connections in systemd's fd store
	// so they outlive a daemon restart (see Handover); nil copies them
	// in-process, and they end with the daemon.
	Handover *Handover
	// EventLoop, when above 0, serves plain requests on proxy.Loop, the
	// event-loop path, with that many threads (ROLLBRIDGE_EVENT_LOOP;
	// docs/performance.md, "The event loop"), and everything else on the
	// net/http path; 0 serves everything on the net/http path.
	EventLoop int
}

// Notifier is the part of sd_notify the daemon uses (pkg/systemd implements it).
type Notifier interface {
	Ready(status string)
	Status(status string)
	Reloading()
	Stopping()
	Watchdog()
	// ExtendTimeout asks for more time to finish starting (EXTEND_TIMEOUT_USEC).
	ExtendTimeout(d time.Duration)
}

type nopNotifier struct{}

func (nopNotifier) ExtendTimeout(time.Duration) {}
func (nopNotifier) Ready(string)                {}
func (nopNotifier) Status(string)               {}
func (nopNotifier) Reloading()                  {}
func (nopNotifier) Stopping()                   {}
func (nopNotifier) Watchdog()                   {}

// Run serves until ctx ends or a shutdown command arrives, then stops every
// managed process and returns. It returns an error only when the daemon
// could not start.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	env := o.Env
	if env == nil {
		env = config.EnvMap(os.Environ())
	}
	notifier := o.Notifier
	if notifier == nil {
		notifier = nopNotifier{}
	}
	statusDirty := make(chan struct{}, 1)
	stateDirty := make(chan struct{}, 1)
	outputs := o.Outputs
	if len(outputs) == 0 {
		w := o.Stdout
		if w == nil {
			w = os.Stdout
		}
		outputs = []events.Output{events.JSONLines(w)}
	}
	// Every event may change the one-line status and the state file: mark
	// both dirty and let their loops do the work, so the event log's writer
	// never waits for a status computation or a disk.
	outputs = append(outputs, events.OutputFunc(func(events.Event) {
		for _, ch := range []chan struct{}{statusDirty, stateDirty} {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}))
	d := &daemon{version: o.Version, notifier: notifier,
		shutdownReq: make(chan struct{}), stopped: make(chan struct{}), alive: make(chan chan struct{})}
	d.cfg.Store(cfg)
	al := d.newAccessLog(cfg, o)
	defer al.close() // after the proxy stopped: writes what is queued
	mx := d.newMetrics(al)
	if mx != nil {
		outputs = append(outputs, mx) // the health-check wait
	}
	log := events.New(events.DefaultCapacity, outputs...)
	defer log.Close() // writes what is still queued for stdout or the journal
	d.log = log

	if err := checkInherited(cfg, o.Listeners); err != nil {
		return err
	}
	lns, err := openListeners(ctx, cfg, o.Listeners)
	if err != nil {
		return err
	}
	accepts := &countingListener{Listener: lns.Proxy}
	d.lns = lns
	px := proxy.New(proxy.Options{OnError: (&errorReporter{log: log, metrics: mx}).report, TrustedProxies: cfg.Proxy.TrustedProxies,
		UpstreamTimeout: cfg.Proxy.UpstreamTimeout(), CrashHold: cfg.Proxy.HoldTimeout(),
		MaxHeld: cfg.Proxy.MaxHeld, HoldRelease: cfg.Proxy.HoldRelease,
		FDStore: o.Handover.proxyStore(), Observe: observers(mx, al)})
	px.SetHostHealthPath(cfg.Proxy.HostHealthPath)
	d.proxy = px
	d.traffic = &traffic{px: px, log: log, cfg: d.cfg.Load}
	instance := o.Instance
	if instance == "" {
		instance = runtoken.NewInstance()
	}
	runner := o.Runner
	if runner == nil {
		runner = process.ExecRunner{Instance: instance}
	}
	_, adoptable := runner.(process.Adopter)
	_, d.execRuntime = runner.(process.ExecRunner)
	d.warnUnitSettings(cfg)
	d.sup = supervisor.New(supervisor.Options{
		Config: cfg, Proxy: px, Events: log, Runner: runner, Env: env, Output: o.ProcessOutput,
		// Every deploy and rollback re-reads the file with the loader SIGHUP uses.
		LoadConfig: o.LoadConfig, OnConfig: d.adopt,
	})
	// Client connections end at a request boundary at a stop, and a
	// restart parks the idle ones for the next daemon (see handover.go).
	d.clients = proxy.NewClientConns(o.Handover.proxyStore())
	d.httpSrv = &http.Server{
		Handler:           px,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ConnState:         d.clients.ConnState,
		ConnContext:       d.clients.ConnContext, // the proxy watches for a client leaving per connection, not per request
	}
	ctlHandler := &handler{sup: d.sup, log: log, status: d.status, shutdown: d.shutdownCommand, metrics: mx, host: d, traffic: d.traffic}
	d.ctl = control.NewServer(ctlHandler, func(command string, err *control.Error) { commandFailed(log, command, err) })

	// The proxy serves from the start, holding what arrives until the
	// release is restored or booted (proxy.holdTimeoutMs bounds each wait):
	// a request queued while the previous daemon restarted is answered
	// by the release, or with a 503 that says when to retry — never left
	// in the kernel backlog for as long as the start takes.
	px.Hold(cfg.Proxy.HoldTimeout())
	d.resumeClients(o.Handover) // served first, held like the rest
	var serveOn net.Listener = accepts
	if o.EventLoop > 0 {
		lp, err := px.NewLoop(lns.Proxy, o.EventLoop, func() { accepts.accepts.Add(1) })
		if err != nil {
			return fmt.Errorf("the event loop (ROLLBRIDGE_EVENT_LOOP): %w", err)
		}
		// A busy loop thread keeps its P between events (a raw wait; a
		// quiet one gives it back), so with every thread busy the rest
		// of the daemon (the net/http path, the supervisor, the GC) still
		// needs one: the benchmark pins the daemon to one CPU. More would
		// only let more threads run than there are CPUs. It is set even
		// when it is high enough: that ends the runtime's own updates of
		// GOMAXPROCS from the cgroup's CPU limit, which could otherwise
		// lower it under the threads (a quota cut while running).
		runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), o.EventLoop+1))
		d.loop, serveOn = lp, lp.Listener()
		d.clients.ReturnTo(lp) // a connection given up for one request is the loop's again for the next
	}
	var wg sync.WaitGroup
	if d.loop != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.loop.Run(); err != nil {
				log.Emit(events.ProxyStoppedServing, map[string]any{events.KeyError: "event loop: " + err.Error()})
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.httpSrv.Serve(d.clients.Listener(serveOn)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Emit(events.ProxyStoppedServing, map[string]any{events.KeyError: err.Error()})
		}
	}()

	// Restore before the control socket answers: commands wait in the
	// kernel backlog meanwhile instead of meeting a half-started daemon.
	var prev *previous
	var firstErr error
	restoreProblem := ""
	if cfg.StatePath != "" {
		var err error
		if prev, err = loadState(ctx, cfg, log, d.sup, adoptable); err != nil {
			d.abandonStart()
			return err
		}
		prev.own = instance
		prev.hostDrained = px.HostDrainedSince
		if prev.snap != nil && prev.snap.HostDrained {
			// Drained before the restart: the balancer must not be told
			// otherwise until undrain-host says so. Since when is the
			// first drain's time (status shows it), or now for a state
			// file that did not keep it.
			px.RestoreHostDrained(prev.snap.HostDrainedSince)
			log.Emit(events.HostDrained, map[string]any{events.KeyReason: "drained when the previous daemon stopped (state file); rollbridgectl undrain-host ends it"})
		}
		prev.maintenance = d.traffic.record
		// Before the release is restored: its first request meets the
		// maintenance page, as before the restart.
		d.traffic.restore(prev.maintenanceAtStart())
		// Before any process starts: from here on, whatever this daemon
		// starts can be found by rollbridgectl recover should it crash.
		firstErr = firstWrite(cfg, prev, log)
		if !adoptable || !adopt(ctx, prev.snap, log, d.sup) {
			restoreProblem = restore(ctx, cfg, prev, log, d.sup, notifier)
		}
	}
	if o.Boot != nil {
		err := o.Boot.Validate()
		if err == nil {
			err = boot(ctx, cfg, *o.Boot, prev, restoreProblem, log, d.sup, notifier)
		}
		if err != nil {
			d.abandonStart()
			wg.Wait()
			if ctx.Err() != nil {
				return nil // stopped while booting: a requested stop, not a failure
			}
			return err
		}
	}
	d.resume(o.Handover)
	// Started: from now on no release means 503 at once, as the spec says
	// (or, with holdBeforeFirstDeploy and nothing restored, once the first
	// deploy has served).
	if cfg.Proxy.HoldBeforeFirstDeploy && px.Active() == nil {
		px.HoldUntilSwap(cfg.Proxy.HoldTimeout())
	} else {
		px.EndHold()
	}

	var metricsSrv metricsServer
	defer metricsSrv.close() // last: the final state stays scrapeable while the daemon stops
	metricsSrv.serve(mx, lns.Metrics, log)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.ctl.Serve(lns.Control); err != nil {
			log.Emit(events.ControlSocketStoppedServing, map[string]any{events.KeyError: err.Error()})
		}
	}()
	// The spec's two start events, then ours with everything in one place.
	// They come after the restore, whose events (the previous daemon's
	// history first) they follow in the log.
	proxyPort := cfg.Proxy.Port
	if a, ok := lns.Proxy.Addr().(*net.TCPAddr); ok {
		proxyPort = a.Port // the bound port, when the config says 0
	}
	log.Emit(events.ProxyListening, map[string]any{"host": cfg.Proxy.Host, "port": proxyPort})
	log.Emit(events.ControlSocketListening, map[string]any{events.KeyPath: cfg.Control.Path})
	log.Emit(events.DaemonStarted, map[string]any{events.KeyApplication: cfg.Application, events.KeyPid: os.Getpid(),
		"proxy": lns.Proxy.Addr().String(), "control": cfg.Control.Path, "version": o.Version})
	line, _ := d.summary()
	notifier.Ready(line)

	loopCtx, stopLoops := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	loops.Add(1)
	go func() {
		defer loops.Done()
		d.statusLoop(loopCtx, statusDirty)
	}()
	if cfg.StatePath != "" {
		loops.Add(1)
		go func() {
			defer loops.Done()
			persistLoop(loopCtx, cfg.StatePath, stateDirty, log, d.sup, prev, firstErr)
		}()
	}
	if o.WatchdogInterval > 0 {
		loops.Add(1)
		go func() {
			defer loops.Done()
			watchdogLoop(loopCtx, o.WatchdogInterval, func(ctx context.Context) error { return d.probe(ctx, accepts) }, notifier.Watchdog)
		}()
	}

	// The main loop only waits: a SIGHUP's reload runs in a goroutine of
	// its own, so a slow (or runaway) config never delays a stop, and the
	// watchdog probe, which asks this loop too, keeps passing.
	reloadCtx, cancelReload := context.WithCancel(context.Background())
	var reloadWG sync.WaitGroup
	reloadDone := make(chan struct{}, 1) // one reload at a time sends at most once
	reloading, again := false, false
	startReload := func() {
		reloading = true
		reloadWG.Add(1)
		go func() {
			defer reloadWG.Done()
			d.reload(reloadCtx, o.LoadConfig)
			reloadDone <- struct{}{}
		}()
	}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-d.shutdownReq:
			done = true
		case <-o.Reload:
			if reloading {
				again = true // SIGHUPs during a reload make one more, with the file as it is then
			} else {
				startReload()
			}
		case <-reloadDone:
			reloading = false
			if again {
				again = false
				startReload()
			}
		case reply := <-d.alive:
			close(reply)
		}
	}
	cancelReload()
	reloadWG.Wait() // prompt: the cancelled evaluation's child is killed
	notifier.Stopping()
	stopLoops()
	loops.Wait()
	var final *state.Snapshot
	if cfg.StatePath != "" {
		final = d.sup.PersistSnapshot() // before the stop: it names the active release
	}
	byCommand := isClosed(d.shutdownReq)
	if !byCommand && o.KeepProcesses != nil && o.KeepProcesses() {
		d.detach()
		d.park()
		d.keepState(cfg.StatePath, prev.record(final))
	} else {
		d.shutdown()
		d.unpark(o.Handover)
		d.finishState(cfg, prev.record(final), prev, byCommand)
	}
	close(d.stopped) // lets a pending shutdown command answer
	d.ctl.Close(5 * time.Second)
	wg.Wait()
	log.Emit(events.DaemonStopped, map[string]any{events.KeyApplication: cfg.Application})
	return nil
}

// errorReporter turns proxy errors into "proxy error" events and the
// hold's 503s into "requests not held" events, each at most one per
// second: a dead upstream fails every request, a hold that times out
// answers every waiting request at once, and one line per request would
// flood the journal.
type errorReporter struct {
	log          *events.Log
	metrics      *metrics.Metrics // counts every report, throttled or not; nil without metrics
	errors, hold throttle
}

func (e *errorReporter) report(releaseID string, err error) {
	if e.metrics != nil {
		e.metrics.UpstreamError(releaseID)
	}
	if errors.Is(err, proxy.ErrNotHeld) {
		if n, ok := e.hold.allow(); ok {
			e.log.Emit(events.RequestsNotHeld, map[string]any{events.KeyError: err.Error(), "suppressedSinceLast": n,
				events.KeyHint: "no release served within proxy.holdTimeoutMs; check the release's health and boot time, or raise the timeout"})
		}
		return
	}
	if n, ok := e.errors.allow(); ok {
		e.log.Emit(events.ProxyError, map[string]any{events.KeyReleaseID: releaseID, events.KeyError: err.Error(), "suppressedSinceLast": n})
	}
}

// throttle lets one report a second through and counts the others.
type throttle struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow says whether to report now and, if so, how many were suppressed
// since the last report.
func (t *throttle) allow() (suppressed int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Sub(t.last) < time.Second {
		t.suppressed++
		return 0, false
	}
	t.last = now
	suppressed, t.suppressed = t.suppressed, 0
	return suppressed, true
}

// finishState settles the state file at exit. The shutdown command is the
// "clean" shutdown of the spec and removes it. A signal (systemctl stop, a
// reboot) keeps a snapshot saying every process was stopped, so the next
// start can restore the active release.
//
// Leftovers of an earlier daemon (orphans) are kept in either case: the
// file is what lets rollbridgectl recover find them. This daemon's own
// instance is dropped once none of its recorded processes is alive (it
// stopped them all, with what they daemonized); an earlier daemon's once
// a last look (FindOrphans, once, at exit) finds none of its processes.
func (d *daemon) finishState(cfg *config.Config, final *state.Snapshot, prev *previous, byCommand bool) {
	path := cfg.StatePath
	if final == nil || path == "" {
		return
	}
	// Our own processes are all stopped now; only leftovers can be alive.
	var leftovers []state.ProcessRecord
	ownLeft := false
	recordedPrev := map[int]bool{}
	if prev.snap != nil {
		for _, p := range prev.snap.Processes {
			recordedPrev[p.Pid] = true
		}
	}
	for _, p := range final.Processes {
		if state.Alive(p.Pid, p.StartTime) {
			leftovers = append(leftovers, p)
			ownLeft = ownLeft || !recordedPrev[p.Pid]
		}
	}
	var instances []string
	if ownLeft {
		instances = append(instances, prev.own)
	}
	if len(prev.earlier) > 0 {
		instances = append(instances, state.LiveInstances(prev.snap.FindOrphans(state.LookupUIDs(cfg.Users())))...)
	}
	// Maintenance keeps the file too: it stays on until turned off.
	if byCommand && len(leftovers) == 0 && len(instances) == 0 && final.Maintenance == nil {
		if err := state.Remove(path); err != nil {
			d.log.Emit(events.StateFileNotRemoved, map[string]any{events.KeyPath: path, events.KeyError: err.Error()})
		}
		return
	}
	final.Stopped = len(leftovers) == 0 && len(instances) == 0
	final.Processes = append([]state.ProcessRecord{}, leftovers...)
	final.Instances = instances
	if byCommand {
		final.ActiveReleaseID = "" // shut down on purpose: nothing to restore
	}
	final.Events = d.log.Recent(state.MaxEvents)
	if err := state.Save(path, final); err != nil {
		d.log.Emit(events.StateSaveFailed, map[string]any{events.KeyPath: path, events.KeyError: err.Error()})
	}
}

// keepState saves the final snapshot of a daemon that leaves its
// processes running: it names them, so the next daemon adopts them.
func (d *daemon) keepState(path string, final *state.Snapshot) {
	if final == nil || path == "" {
		return
	}
	final.Events = d.log.Recent(state.MaxEvents)
	if err := state.Save(path, final); err != nil {
		d.log.Emit(events.StateSaveFailed, map[string]any{events.KeyPath: path, events.KeyError: err.Error()})
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

type daemon struct {
	cfg      atomic.Pointer[config.Config]
	notifier Notifier
	log      *events.Log
	lns      Listeners
	version  string
	proxy    *proxy.Proxy
	sup      *supervisor.Supervisor
	traffic  *traffic
	httpSrv  *http.Server
	clients  *proxy.ClientConns // httpSrv's client connections
	loop     *proxy.Loop        // nil unless Options.EventLoop
	// clientsResumed counts the idle client connections the previous
	// daemon parked and this one took back (resumeClients).
	clientsResumed int
	ctl            *control.Server
	// execRuntime: processes run as the daemon's children, which cannot
	// take systemd unit settings; unitWarned says that was logged.
	execRuntime bool
	unitWarned  atomic.Bool

	shutdownOnce sync.Once
	shutdownReq  chan struct{}      // closed by the shutdown command
	alive        chan chan struct{} // the main loop closes each channel it receives (probe)
	stopped      chan struct{}      // closed once everything is down and the socket removed
}

func (d *daemon) status() supervisor.Status {
	cfg := d.cfg.Load()
	host, port := cfg.Proxy.Host, cfg.Proxy.Port
	if a, ok := d.lns.Proxy.Addr().(*net.TCPAddr); ok {
		port = a.Port
	}
	ps := supervisor.ProxyStatus{Host: host, Port: port, UpstreamHost: cfg.Proxy.UpstreamHost,
		Held: d.proxy.Held(), HoldGaveUp: d.proxy.HoldGaveUp()}
	if d.loop != nil {
		served, handed := d.loop.Stats()
		ps.EventLoop = &supervisor.EventLoopStatus{Threads: d.loop.Threads(), Served: served, HandedOff: handed}
	}
	return d.sup.Snapshot(os.Getpid(), d.version, ps)
}

// shutdownCommand asks Run to stop and answers once it has.
func (d *daemon) shutdownCommand(ctx context.Context) error {
	d.shutdownOnce.Do(func() { close(d.shutdownReq) })
	select {
	case <-d.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopServing ends the proxy's part: held requests are answered at once (503
// with no release; the next daemon, if any, takes the new connections), no
// new connections are accepted, and in-flight requests finish, bounded by
// drainTimeoutMs, after which the rest are cut. Each client connection
// ends at its next request boundary with no byte of its next request
// read: parked in the fd store for the next daemon when park is true (a
// restart with the hand-over), closed otherwise.
//
// Not http.Server.Shutdown: it closes idle connections whatever net/http
// has read of their next request already, and drops without an answer a
// request whose head it finished reading after the shutdown began (the
// lane's rare "1 of 1000 requests failed" across a restart).
func (d *daemon) stopServing(cfg *config.Config, park bool) {
	d.proxy.EndHold()
	d.traffic.stop()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Proxy.DrainTimeout())
	if d.loop != nil {
		// The loop gives every connection to the net/http path at its
		// request boundary (a request waiting for its answer at once,
		// with the answer pending); from there they end, or are parked,
		// as all do. A client that will not take its answer is cut off
		// when the grace period ends, as http.Server.Close cuts net/http's.
		d.loop.Stop()
		select {
		case <-d.loop.Done():
		case <-ctx.Done():
			d.loop.Close()
			<-d.loop.Done()
		}
		d.loop.WaitHandedOff(ctx) // accepted, so Stop parks or serves them
	}
	parked, err := d.clients.Stop(ctx, park) // waits for in-flight HTTP, not for hijacked WebSockets
	cancel()
	if park {
		data := map[string]any{"parked": parked}
		if err != nil {
			data[events.KeyError] = err.Error()
		}
		d.log.Emit(events.ClientsParked, data)
	}
	// The grace period ran out (err) or all ended: cut what is left, if anything.
	_ = d.httpSrv.Close()
}

// detach ends the daemon without stopping the managed processes (they
// belong to systemd and the next daemon adopts them): no new control
// commands, in-flight HTTP requests finish (bounded by drainTimeoutMs)
// while new connections wait in the socket's backlog for the next daemon,
// which holds them until its release serves (see docs/systemd.md), then
// the proxy closes. With the fd store hand-over, each client connection
// is parked at its request boundary for the next daemon (idle keep-alive
// ones at once), and so are the spliced upgraded connections (park);
// without it, both end with this process.
func (d *daemon) detach() {
	cfg := d.cfg.Load()
	d.log.Emit(events.DaemonStopping, map[string]any{events.KeyApplication: cfg.Application, "processesKept": true})
	d.ctl.StopAccepting()
	d.stopServing(cfg, d.clients.CanPark())
	d.sup.Detach()
	d.proxy.Close()
	d.lns.removeControl(cfg.Control.Path) // and its lock, for the next daemon
}

// shutdown stops in order: no new control commands, no new proxy
// connections while in-flight requests finish (bounded by drainTimeoutMs),
// every managed process, then the control socket file.
func (d *daemon) shutdown() {
	cfg := d.cfg.Load()
	d.log.Emit(events.DaemonStopping, map[string]any{events.KeyApplication: cfg.Application})
	d.ctl.StopAccepting()
	d.stopServing(cfg, false)
	d.sup.Shutdown(context.Background())
	d.proxy.Close()
	d.lns.removeControl(cfg.Control.Path)
}
