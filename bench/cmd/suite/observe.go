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
type ObserveReport struct {
	Scenario string                  `json:"scenario"`
	Targets  map[string]*TargetStats `json:"targets"`
	Order    []string                `json:"order"`
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

// observeCost runs GET 100 B c64 keep-alive against one daemon per variant,
// interleaving the variants within each repeat so that noise on this
// shared machine hits them alike (the median of the repeats is compared,
// with the spread beside it).
func observeCost(ctx context.Context, e *env) (*ObserveReport, error) {
	rep := &ObserveReport{Scenario: "GET 100 B c64 keep-alive", Targets: map[string]*TargetStats{}}
	type target struct {
		name, url string
		d         *daemon
	}
	var ts []target
	for i, v := range observeVariants {
		d, url, err := e.startDaemonWith(fmt.Sprintf("obs%d", i), v.top, "{}", "[]", 2)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", v.name, err)
		}
		if _, err := d.deploy(ctx, nil); err != nil {
			return rep, fmt.Errorf("%s: deploy: %w", v.name, err)
		}
		ts = append(ts, target{v.name, url, d})
		rep.Targets[v.name] = &TargetStats{}
		rep.Order = append(rep.Order, v.name)
	}
	for i := 0; i < e.o.repeat; i++ {
		for _, t := range ts {
			pid := t.d.cmd.Process.Pid
			cpu0 := cpuTime(pid)
			r := load.Run(ctx, load.Config{URL: t.url + "/bytes?n=100", Concurrency: 64, Duration: e.o.dur, KeepAlive: true})
			cpu := cpuTime(pid) - cpu0
			st := rep.Targets[t.name]
			st.Runs = append(st.Runs, r)
			if r.Requests > 0 {
				st.CPUPerReq = append(st.CPUPerReq, float64(cpu.Microseconds())/float64(r.Requests))
			}
			time.Sleep(200 * time.Millisecond) // let TIME_WAIT and GC settle between runs
		}
	}
	fmt.Fprintln(os.Stderr, "bench: observability done")
	return rep, nil
}

func (o *ObserveReport) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Observability cost (%s, rollbridged's CPU per request; %d interleaved runs each, median [min–max])\n\n",
		o.Scenario, len(o.Targets[o.Order[0]].Runs))
	b.WriteString("| Variant | CPU µs/req | vs off (medians) | req/s | p99 ms | failures |\n|---|---|---|---|---|---|\n")
	_, off, _ := stats(o.Targets[o.Order[0]].CPUPerReq)
	for _, name := range o.Order {
		t := o.Targets[name]
		lo, med, hi := stats(t.CPUPerReq)
		_, rps, _ := t.rps()
		diff := "—"
		if name != o.Order[0] && off > 0 {
			diff = fmt.Sprintf("%+.1f %%", (med/off-1)*100)
		}
		fmt.Fprintf(&b, "| %s | %.1f [%.1f–%.1f] | %s | %.0f | %.2f | %d |\n", name, med, lo, hi, diff, rps,
			t.median(func(r load.Result) float64 { return r.P99 })/1000, t.failures())
	}
	return b.String()
}
