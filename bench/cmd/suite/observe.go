package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge-go/bench/load"
)

// ObserveReport is the observability section: the proxy's CPU per request
// with metrics and the access log off and on, same load, same run.
type ObserveReport = CompareReport

// CompareReport is one load shape against several targets, interleaved
// within each repeat.
type CompareReport struct {
	Scenario string                  `json:"scenario"`
	Targets  map[string]*TargetStats `json:"targets"`
	Order    []string                `json:"order"`
}

// compareSmallKeepAlive runs the scenario the cores and observe sections
// share, GET 100 B c64 keep-alive, against ts.
func compareSmallKeepAlive(ctx context.Context, e *env, ts []target) *CompareReport {
	return compare(ctx, e, "GET 100 B c64 keep-alive", ts, func(url string) load.Config {
		return load.Config{URL: url + "/bytes?n=100", Concurrency: 64, Duration: e.o.dur, KeepAlive: true}
	})
}

// compare runs cfg against every target e.o.repeat times, interleaving the
// targets within each repeat so that noise on this shared machine hits
// them alike (the median of the repeats is compared, with the spread
// beside it).
func compare(ctx context.Context, e *env, scenario string, targets []target, cfg func(url string) load.Config) *CompareReport {
	rep := &CompareReport{Scenario: scenario, Targets: map[string]*TargetStats{}}
	for _, t := range targets {
		rep.Targets[t.name] = &TargetStats{}
		rep.Order = append(rep.Order, t.name)
	}
	for i := 0; i < e.o.repeat; i++ {
		for _, t := range targets {
			measure(ctx, rep.Targets[t.name], t, cfg(t.url))
			time.Sleep(200 * time.Millisecond) // let TIME_WAIT and GC settle between runs
		}
	}
	return rep
}

// observeVariants are the daemons the section compares, each a config
// top level merged into the bench config. The access log writes JSON
// lines to the daemon's stdout, a file here (the journal under systemd).
var observeVariants = []struct{ name, top string }{
	{"off", "{}"},
	{"metrics", "{metrics: {port: 0}}"},
	{"access log", "{accessLog: {}}"},
	{"metrics + access log", "{metrics: {port: 0}, accessLog: {}}"},
}

// observeCost runs GET 100 B c64 keep-alive against one daemon per variant
// (each on the proxy's CPU when pinning), interleaved.
func observeCost(ctx context.Context, e *env) (*ObserveReport, error) {
	defer e.pinLoad()()
	var ts []target
	for i, v := range observeVariants {
		d, url, err := e.startProxyDaemon(ctx, fmt.Sprintf("obs%d", i), v.top, e.proxyCPUs())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		ts = append(ts, target{v.name, url, func() int { return d.cmd.Process.Pid }, d.allocs})
	}
	rep := compareSmallKeepAlive(ctx, e, ts)
	fmt.Fprintln(os.Stderr, "bench: observability done")
	return rep, nil
}

func (o *CompareReport) observeTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Observability cost (%s, rollbridged's CPU per request; %d interleaved runs each, median [min–max])\n\n",
		o.Scenario, len(o.Targets[o.Order[0]].Runs))
	b.WriteString("| Variant | CPU µs/req | vs off (medians) | req/s | p99 ms | allocs/req | B/req | failures |\n|---|---|---|---|---|---|---|---|\n")
	_, off, _ := stats(o.Targets[o.Order[0]].CPUPerReq)
	for _, name := range o.Order {
		t := o.Targets[name]
		lo, med, hi := stats(t.CPUPerReq)
		_, rps, _ := t.rps()
		diff := "—"
		if name != o.Order[0] && off > 0 {
			diff = fmt.Sprintf("%+.1f %%", (med/off-1)*100)
		}
		allocs, bytes := allocCells(t)
		fmt.Fprintf(&b, "| %s | %.1f [%.1f–%.1f] | %s | %.0f | %.2f | %s | %s | %d |\n", name, med, lo, hi, diff, rps,
			t.median(func(r load.Result) float64 { return r.P99 })/1000, allocs, bytes, t.failures())
	}
	return b.String()
}
