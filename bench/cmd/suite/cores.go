package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/rollbridge/rollbridge-go/bench/load"
)

// coresCompare is the cores section: how the proxies scale from one CPU to
// two. rollbridged pinned to the proxy's CPU against one allowed both
// (GOMAXPROCS follows: 1 and 2), nginx with one worker on the proxy's CPU
// against worker_processes auto on both. The load generator and the app
// stay on the load CPU, so "2 cores" means the proxy may also take the
// load generator's: on a 2-CPU machine that is the most it can get.
func coresCompare(ctx context.Context, e *env) (*CompareReport, error) {
	defer e.pinLoad()()
	both := e.pin.both()
	rb2, rb2URL, err := e.startProxyDaemon(ctx, "rb-cores", "{}", both)
	if err != nil {
		return nil, err
	}
	ts := []target{
		{"rollbridged, 1 CPU", e.prbURL, func() int { return e.prb.cmd.Process.Pid }, e.prb.allocs},
		{fmt.Sprintf("rollbridged, %d CPUs", len(both)), rb2URL, func() int { return rb2.cmd.Process.Pid }, rb2.allocs},
	}
	if e.ngURL != "" {
		ng2, ng2URL, err := e.startNginx("nginx-auto", 0, both)
		if err != nil {
			return nil, fmt.Errorf("nginx with worker_processes auto: %w", err)
		}
		ts = append(ts,
			target{"nginx, 1 worker, 1 CPU", e.ngURL, func() int { return e.nginx.Process.Pid }, ""},
			target{fmt.Sprintf("nginx, worker_processes auto, %d CPUs", len(both)), ng2URL, func() int { return ng2.Process.Pid }, ""})
	}
	rep := compareSmallKeepAlive(ctx, e, ts)
	fmt.Fprintln(os.Stderr, "bench: cores done")
	return rep, nil
}

// coresTable renders the cores section; "× 1 CPU" compares each 2-CPU
// target with the same proxy on 1 CPU (medians).
func (c *CompareReport) coresTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Scaling with cores (%s; load generator and app on the load CPU; %d interleaved runs, median [min–max])\n\n",
		c.Scenario, len(c.Targets[c.Order[0]].Runs))
	b.WriteString("| proxy | req/s | × 1 CPU | CPU µs/req | p50 µs | p99 µs | allocs/req | B/req | failures |\n|---|---|---|---|---|---|---|---|---|\n")
	var base float64
	for i, name := range c.Order {
		t := c.Targets[name]
		lo, m, hi := t.rps()
		ratio := "—"
		if i%2 == 0 {
			base = m
		} else if base > 0 {
			ratio = fmt.Sprintf("%.2f", m/base)
		}
		_, cpu, _ := stats(t.CPUPerReq)
		allocs, bytes := allocCells(t)
		fmt.Fprintf(&b, "| %s | %.0f [%.0f–%.0f] | %s | %.1f | %.0f | %.0f | %s | %s | %d |\n", name, m, lo, hi, ratio, cpu,
			t.median(func(r load.Result) float64 { return r.P50 }), t.median(func(r load.Result) float64 { return r.P99 }), allocs, bytes, t.failures())
	}
	return b.String()
}
