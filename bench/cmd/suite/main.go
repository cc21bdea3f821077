// Command suite runs rollbridge's benchmark suite: proxy overhead against
// the app directly and against nginx (throughput, latency, CPU, and
// rollbridged's allocations per request), scaling with cores, bare Go
// forwarders beside both (the floor), both proxies with a lean load side
// (wrk and a static app) on a whole CPU and on half of one, the cost of metrics and the access log, deploys under load, deploys with each
// process runtime (exec and systemd), draining many WebSockets, the
// daemon's start and status times, and its footprint. It prints a results table and
// writes the raw numbers as JSON. Run it with `make bench` (see
// docs/performance.md); it needs the binaries built by that target.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	bin     string
	out     string
	repeat  int
	dur     time.Duration
	deploys int
	// runtimeDeploys is how many deploys the runtime section makes with
	// each process runtime.
	runtimeDeploys int
	sockets        int
	quick          bool
	noNginx        bool
	// pin puts the proxy under test on one CPU and the load generator and
	// the app on another in the proxy sections (issue #17's rule).
	pin bool
	// starts is how many times the startup section starts a daemon and
	// runs rollbridgectl status.
	starts   int
	sections string
	match    string
	// abBin, when set, is a directory with another build's rollbridged,
	// measured beside this one's in the floor and lean sections (an A/B).
	abBin string
}

// wantsPinning: a section that pins runs (the others need no pinned
// processes, so none are started for them).
func (o options) wantsPinning() bool {
	for _, s := range []string{"proxy", "cores", "floor", "lean", "observe"} {
		if strings.Contains(o.sections, s) {
			return true
		}
	}
	return false
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory holding rollbridged, rollbridgectl and demo-app")
	flag.StringVar(&o.out, "out", "", "raw results file (default bench/results/run-<time>.json)")
	flag.IntVar(&o.repeat, "repeat", 3, "runs per proxy scenario (min/median/max are reported)")
	flag.DurationVar(&o.dur, "d", 3*time.Second, "duration of one proxy run")
	flag.IntVar(&o.deploys, "deploys", 100, "deploys under load")
	flag.IntVar(&o.runtimeDeploys, "runtime-deploys", 20, "deploys per process runtime (exec, systemd) in the runtime section")
	flag.IntVar(&o.sockets, "sockets", 10000, "WebSockets for the drain test (capped by the fd limit)")
	flag.BoolVar(&o.quick, "quick", false, "one short run per scenario (a smoke test, not a measurement)")
	flag.BoolVar(&o.noNginx, "no-nginx", false, "skip the nginx comparison")
	flag.BoolVar(&o.pin, "pin", true, "in the proxy, cores, floor, lean and observe sections, run the proxy under test (rollbridged or nginx) on one CPU and the load generator and the app on another (-pin=false: unpinned; the cores section needs pinning)")
	flag.IntVar(&o.starts, "starts", 20, "daemon starts and rollbridgectl status runs in the startup section (medians are reported)")
	flag.StringVar(&o.sections, "only", "proxy,cores,floor,lean,observe,startup,deploy,runtime,drain,footprint,idle", "sections to run")
	flag.StringVar(&o.match, "match", "", "only proxy scenarios whose name contains this")
	flag.StringVar(&o.abBin, "ab-bin", "", "a directory with another build's rollbridged, measured beside -bin's in the floor and lean sections (an A/B of two commits)")
	flag.Parse()
	if o.quick {
		o.repeat, o.dur, o.deploys, o.sockets, o.runtimeDeploys, o.starts = 1, time.Second, 10, 500, 5, 3
	}
	if o.out == "" {
		o.out = filepath.Join("bench", "results", "run-"+time.Now().UTC().Format("20060102-150405")+".json")
	}
	// An interrupt ends the run through its cleanups (daemons stopped, the
	// lean section's CPU quota let go of and removed), not mid-way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if rep != nil {
		fmt.Print(rep.Table())
		if err2 := os.MkdirAll(filepath.Dir(o.out), 0o755); err2 == nil {
			b, _ := json.MarshalIndent(rep, "", "  ")
			if os.WriteFile(o.out, b, 0o644) == nil {
				fmt.Println("\nraw results:", o.out)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
