// Command suite runs rollbridge's benchmark suite: proxy overhead against
// the app directly and against nginx, the cost of metrics and the access
// log, deploys under load, deploys with each
// process runtime (exec and systemd), draining many WebSockets, and the
// daemon's footprint. It prints a results table and
// writes the raw numbers as JSON. Run it with `make bench` (see
// docs/performance.md); it needs the binaries built by that target.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
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
	sections       string
	match          string
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
	flag.StringVar(&o.sections, "only", "proxy,observe,deploy,runtime,drain,footprint,idle", "sections to run")
	flag.StringVar(&o.match, "match", "", "only proxy scenarios whose name contains this")
	flag.Parse()
	if o.quick {
		o.repeat, o.dur, o.deploys, o.sockets, o.runtimeDeploys = 1, time.Second, 10, 500, 5
	}
	if o.out == "" {
		o.out = filepath.Join("bench", "results", "run-"+time.Now().UTC().Format("20060102-150405")+".json")
	}
	ctx := context.Background()
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
