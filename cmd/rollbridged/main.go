// Command rollbridged is the rollbridge daemon: it holds the stable proxy
// port and the control socket and supervises the app's releases.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/allocstats"
	"github.com/rollbridge/rollbridge-go/internal/runtoken"
	"github.com/rollbridge/rollbridge-go/internal/version"
	"github.com/rollbridge/rollbridge-go/pkg/accesslog"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/daemon"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/systemd"
)

const usage = `Usage: rollbridged [-c PATH] [--release-path DIR --release-id ID --revision REV]

Runs the rollbridge daemon in the foreground: binds the proxy (proxy.host:port)
and the control socket (control.path) — or takes them from systemd socket
activation (FileDescriptorName=proxy / control) — logs one JSON line per event
to stdout (native journal entries under systemd), re-reads the config on
SIGHUP, and stops every managed process on SIGINT or SIGTERM. Under
systemd with runtime systemd and FileDescriptorStoreMax= set, open WebSockets
are kept in the unit's fd store and survive a daemon restart or crash, and a
restart (systemctl restart) hands idle keep-alive connections to the next
daemon the same way.

The config is evaluated in a child process limited to ROLLBRIDGE_EVAL_TIMEOUT_MS
milliseconds (default 10000) and ROLLBRIDGE_EVAL_MEMORY_MB MiB (default 512).
For measurements (docs/performance.md), off unless set:
ROLLBRIDGE_CPUPROFILE=FILE writes a CPU profile of the whole run, and
ROLLBRIDGE_ALLOCSTATS_SOCKET=PATH answers each connection to a new Unix
socket (mode 0600) with the heap allocation counters as one JSON line.
Plain GETs are served on an event loop (epoll, a thread per CPU but one, no
goroutine per connection), everything else on Go's net/http server.
ROLLBRIDGE_EVENT_LOOP=off serves everything on net/http; =N runs N loop
threads (docs/performance.md, "The event loop").

Options:
  -c, --config PATH      config file (default: rollbridge.jsonnet in the working directory)
      --release-path DIR boot into this release: deploy it (health-checked) before the
      --release-id ID    control socket answers; the three go together. DIR is absolute;
      --revision REV     ID is 1-200 of [A-Za-z0-9._-], starting alphanumeric; REV may
                         also contain / + and @.
                         A release restored from the state file wins over them. If the
                         release fails to start, the daemon exits 1.
      --version          print the version and exit
      --after-stop APP   (ExecStop= of rollbridge-units@APP.service) on a stop job, stop
                         every unit of APP's slice; on a restart job, nothing
`

func main() {
	if config.EvaluatorRequested() { // re-executed by config.Loader to evaluate a config
		os.Exit(config.ServeEvaluation(os.Stdin, os.Stdout))
	}
	fs := flag.NewFlagSet("rollbridged", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	var path string
	var showVersion bool
	var boot daemon.BootRelease
	var afterStop string
	fs.StringVar(&afterStop, "after-stop", "", "stop the application's units on a stop job")
	fs.StringVar(&path, "config", "", "config file")
	fs.StringVar(&path, "c", "", "config file")
	fs.StringVar(&boot.Path, "release-path", "", "boot into this release directory")
	fs.StringVar(&boot.ID, "release-id", "", "the boot release's id")
	fs.StringVar(&boot.Revision, "revision", "", "the boot release's revision")
	fs.BoolVar(&showVersion, "version", false, "print the version")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if showVersion {
		fmt.Println("rollbridged", version.Version)
		return
	}
	if afterStop != "" {
		stopped, err := systemd.AfterStop(context.Background(), afterStop, systemd.UnitsAnchor(afterStop))
		if err != nil {
			fmt.Fprintln(os.Stderr, "rollbridged: after stop:", err)
			os.Exit(1)
		}
		if stopped {
			fmt.Println("stopped the units of", systemd.Slice(afterStop))
		}
		return
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "rollbridged: unexpected argument %q\n%s", fs.Arg(0), usage)
		os.Exit(2)
	}
	var bootRelease *daemon.BootRelease
	if boot != (daemon.BootRelease{}) {
		if err := boot.Validate(); err != nil {
			fmt.Fprintf(os.Stderr, "rollbridged: %v\n%s", err, usage)
			os.Exit(2)
		}
		bootRelease = &boot
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, path, bootRelease); err != nil {
		fmt.Fprintln(os.Stderr, "rollbridged:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path string, boot *daemon.BootRelease) error {
	loopThreads, err := eventLoopThreads(os.Getenv)
	if err != nil {
		return err
	}
	// ROLLBRIDGE_CPUPROFILE=FILE writes a CPU profile of the whole run (for
	// docs/performance.md: profiling the proxy under load).
	if p := os.Getenv("ROLLBRIDGE_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	// ROLLBRIDGE_ALLOCSTATS_SOCKET=PATH serves the heap allocation counters
	// on a Unix socket (for the benchmark suite: allocations per proxied
	// request). Off unless set; nothing on the request path.
	if p := os.Getenv(allocstats.EnvSocket); p != "" {
		ln, err := allocstats.Listen(p)
		if err != nil {
			return fmt.Errorf("%s: %w", allocstats.EnvSocket, err)
		}
		defer ln.Close()
	}
	act, err := systemd.ActivatedListeners() // also clears LISTEN_* for the children
	if err != nil {
		return err
	}
	env := config.EnvMap(os.Environ())
	limits, err := config.LimitsFromEnv(env)
	if err != nil {
		return err
	}
	daemonUnit := os.Getenv("ROLLBRIDGE_SYSTEMD_UNIT") // set by rollbridge@.service
	// One bounded loader for the start, every SIGHUP and every deploy.
	loader := config.Loader{Limits: limits}
	load := func(ctx context.Context) (*config.Config, error) {
		cfg, err := loader.Load(ctx, path, config.EnvMap(os.Environ()))
		if err == nil && cfg.StatePath == "" && daemonUnit != "" {
			// Under rollbridge@APP the state lives in the unit's state
			// directory, so a restarted daemon finds (and adopts) what
			// its predecessor ran without any configuration.
			if dir := os.Getenv("STATE_DIRECTORY"); dir != "" {
				cfg.StatePath = filepath.Join(strings.SplitN(dir, ":", 2)[0], cfg.Application+".state.json")
			}
		}
		return cfg, describeIssues(err)
	}
	cfg, err := load(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while the config evaluated: a requested stop
		}
		return err
	}
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)
	hup := make(chan struct{})
	go func() {
		for range reload {
			hup <- struct{}{}
		}
	}()
	// One token per daemon start, in every process's ROLLBRIDGE_RUN and in
	// the state file: rollbridgectl recover finds this daemon's processes
	// by it should the daemon crash.
	instance := runtoken.NewInstance()
	runner, units, err := systemd.ProcessRuntime(ctx, cfg, daemonUnit, instance)
	if err != nil {
		return err
	}
	if units != nil {
		defer units.Close() // leaves the units running
	}
	handover, err := newHandover(ctx, units, act.Stored)
	if err != nil {
		return err
	}
	o := daemon.Options{
		Runner: runner, Instance: instance,
		Config: cfg, Env: env, Version: version.Version,
		Listeners:        daemon.Listeners{Proxy: act.Proxy, Control: act.Control, Metrics: act.Metrics},
		Notifier:         systemd.NewNotifier(),
		WatchdogInterval: systemd.WatchdogInterval(),
		Reload:           hup, LoadConfig: load,
		Boot: boot, Handover: handover,
		EventLoop: loopThreads,
	}
	if units != nil {
		o.KeepProcesses = func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return units.DaemonRestarting(ctx)
		}
	}
	if systemd.StdoutIsJournal() {
		app := cfg.Application
		o.Outputs = []events.Output{systemd.JournalOutput(app)}
		o.AccessLog = func(e accesslog.Entry) { systemd.AccessEntry(app, e.Message(), e.Fields()) }
		// Units write to the journal themselves; forwarding their lines
		// again would print each twice.
		if units == nil {
			o.ProcessOutput = func(f map[string]any, l process.Line) { systemd.ProcessLine(app, f, l.Stream, l.Line, 0) }
		}
	}
	return daemon.Run(ctx, o)
}

// newHandover sets up the fd store hand-over of upgraded connections and,
// at a restart, of idle keep-alive connections (docs/systemd.md): it parks them only under the systemd runtime, run by
// systemd (NOTIFY_SOCKET), in a unit with FileDescriptorStoreMax= above 0.
// stored are the descriptors this start got back; without a store they
// are closed.
func newHandover(ctx context.Context, units *systemd.Runner, stored []*os.File) (*daemon.Handover, error) {
	max := 0
	if units != nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if n, err := units.FDStoreMax(ctx); err == nil {
			max = n // unreadable reads as 0: connections are copied in-process, as before
		}
	}
	names := make([]string, len(stored))
	for i, f := range stored {
		names[i] = f.Name()
	}
	store, err := systemd.NewFDStore(max, names)
	if err != nil {
		return nil, err
	}
	if store == nil {
		for _, f := range stored {
			_ = f.Close() // no store to resume them under
		}
		return nil, nil
	}
	return &daemon.Handover{Store: store, Enabled: units != nil && max > 0, Parked: stored}, nil
}

// eventLoopThreads reads ROLLBRIDGE_EVENT_LOOP: how many threads the
// event loop runs (docs/performance.md, "The event loop"), 0 for none.
// Unset or "on": one fewer than the CPUs the process may use (GOMAXPROCS
// as the runtime chose it: the affinity mask and the cgroup's CPU limit),
// at least one. A busy loop thread holds its P (the daemon keeps
// GOMAXPROCS above the thread count), and a GOMAXPROCS above the CPUs
// costs the net/http path: uploads on one CPU ran 20 % slower with 2 Ps
// than with 1. So only a one-CPU daemon runs more Ps than CPUs. "off"
// serves everything on the net/http path. (The older
// ROLLBRIDGE_EXPERIMENTAL_LOOP=1 asked for what is the default now.)
func eventLoopThreads(getenv func(string) string) (int, error) {
	v := strings.TrimSpace(getenv(envEventLoop))
	switch v {
	case "", "on":
		return max(1, runtime.GOMAXPROCS(0)-1), nil
	case "off":
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLoopThreads {
		return 0, fmt.Errorf(`%s=%q: want "on" (one thread per CPU but one, the default), "off" (no event loop) or a thread count from 1 to %d`, envEventLoop, v, maxLoopThreads)
	}
	return n, nil
}

const (
	envEventLoop   = "ROLLBRIDGE_EVENT_LOOP"
	maxLoopThreads = 256
)

// describeIssues lists config issues one per line for a readable startup error.
func describeIssues(err error) error {
	var issues config.Issues
	if !errors.As(err, &issues) {
		return err
	}
	var b strings.Builder
	noun := "issues"
	if len(issues) == 1 {
		noun = "issue"
	}
	fmt.Fprintf(&b, "invalid config (%d %s; rollbridgectl validate shows fixes):", len(issues), noun)
	for _, is := range issues {
		b.WriteString("\n  - " + is.Message)
	}
	return errors.New(b.String())
}
