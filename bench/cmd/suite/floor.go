package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// floorModes are bench/floor's forwarders, in the table's order.
var floorModes = []struct{ mode, name string }{
	{"goroutine", "floor: goroutine per connection"},
	{"wait", "floor: goroutine per connection, app side written inside RawConn.Read"},
	{"loop", "floor: one thread, epoll"},
	{"loop-h1", "floor: one thread, epoll, heads parsed by internal/h1"},
	{"loop-scan", "floor: one thread, epoll, heads checked and rewritten in place"},
}

// floorNetHTTPName is the row of rollbridged with its event loop off.
const floorNetHTTPName = "rollbridged, net/http path (ROLLBRIDGE_EVENT_LOOP=off)"

// floorCompare is the floor section: rollbridged and nginx beside the
// bare Go forwarders of bench/floor, each pinned to the proxy's CPU,
// GET 100 B c64 keep-alive, interleaved. It answers how far below
// nginx's CPU per request a Go request path can go on this host, and with
// which design, before any HTTP work is done (issue #17).
func floorCompare(ctx context.Context, e *env) (*CompareReport, error) {
	bin, _ := filepath.Abs(filepath.Join(e.o.bin, "floor"))
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s is missing (make bench builds it): %w", bin, err)
	}
	defer e.pinLoad()()
	// rollbridged without its event loop (issue #17), a daemon of its
	// own, stopped with the section: what the loop buys.
	nh, nhURL, err := e.startProxyDaemon(ctx, "rb-nethttp", "{}", e.proxyCPUs(), "ROLLBRIDGE_EVENT_LOOP=off")
	if err != nil {
		return nil, err
	}
	defer func() { _ = nh.cmd.Process.Signal(syscall.SIGTERM) }()
	ts := []target{
		{"nginx, 1 worker", e.ngURL, func() int { return e.nginx.Process.Pid }, ""},
		{"rollbridged", e.prbURL, func() int { return e.prb.cmd.Process.Pid }, e.prb.allocs},
		{floorNetHTTPName, nhURL, func() int { return nh.cmd.Process.Pid }, nh.allocs},
	}
	if e.o.abBin != "" {
		ab, abURL, err := e.startProxyDaemonSpec(ctx, daemonSpec{name: "rb-ab", top: "{}", cpus: e.proxyCPUs(), rollbridged: filepath.Join(e.o.abBin, "rollbridged")})
		if err != nil {
			return nil, fmt.Errorf("-ab-bin: %w", err)
		}
		defer func() { _ = ab.cmd.Process.Signal(syscall.SIGTERM) }()
		ts = append(ts, target{"rollbridged from " + e.o.abBin, abURL, func() int { return ab.cmd.Process.Pid }, ab.allocs})
	}
	var procs []*exec.Cmd
	defer func() {
		// Idle, they would still take a little of the proxy's CPU in
		// the pinned sections that follow.
		for _, cmd := range procs {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
	}()
	for _, m := range floorModes {
		port := freePort()
		cmd, err := e.startOn("floor-"+m.mode, nil, e.proxyCPUs(), bin, "-mode", m.mode,
			"-listen", "127.0.0.1:"+strconv.Itoa(port), "-upstream", "127.0.0.1:"+strconv.Itoa(e.appPort))
		if err != nil {
			return nil, err
		}
		procs = append(procs, cmd)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		if err := waitHTTP(url + "/ping"); err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		ts = append(ts, target{m.name, url, func() int { return cmd.Process.Pid }, ""})
	}
	rep := compareSmallKeepAlive(ctx, e, ts)
	fmt.Fprintln(os.Stderr, "bench: floor done")
	return rep, nil
}

// floorTable renders the floor section. "× nginx" divides each run's CPU
// per request by nginx's in the same repeat (the runs are interleaved),
// median [min–max] over the repeats; user and system are the medians of
// each run's parts.
func (c *CompareReport) floorTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## The floor: bare Go forwarders beside rollbridged and nginx (%s, each pinned to the proxy's CPU; %d interleaved runs, median [min–max])\n\n",
		c.Scenario, len(c.Targets[c.Order[0]].Runs))
	b.WriteString("| proxy | req/s | CPU µs/req | user µs/req | system µs/req | CPU × nginx | allocated B/req | failures |\n|---|---|---|---|---|---|---|---|\n")
	ng := c.Targets[c.Order[0]]
	for _, name := range c.Order {
		t := c.Targets[name]
		lo, m, hi := t.rps()
		clo, cm, chi := stats(t.CPUPerReq)
		_, user, _ := stats(t.CPUUserPerReq)
		var sys []float64
		for i := range min(len(t.CPUPerReq), len(t.CPUUserPerReq)) {
			sys = append(sys, t.CPUPerReq[i]-t.CPUUserPerReq[i])
		}
		_, system, _ := stats(sys)
		var ratios []float64
		for i := range min(len(t.CPUPerReq), len(ng.CPUPerReq)) {
			if ng.CPUPerReq[i] > 0 {
				ratios = append(ratios, t.CPUPerReq[i]/ng.CPUPerReq[i])
			}
		}
		rlo, rm, rhi := stats(ratios)
		alloc := "–" // only rollbridged counts its allocations
		if len(t.AllocBytesPerReq) > 0 {
			_, ab, _ := stats(t.AllocBytesPerReq)
			alloc = fmt.Sprintf("%.0f", ab)
		}
		fmt.Fprintf(&b, "| %s | %.0f [%.0f–%.0f] | %.1f [%.1f–%.1f] | %.1f | %.1f | %.2f [%.2f–%.2f] | %s | %d |\n",
			name, m, lo, hi, cm, clo, chi, user, system, rm, rlo, rhi, alloc, t.failures())
	}
	return b.String()
}
