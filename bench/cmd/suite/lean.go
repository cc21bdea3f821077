package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/bench/load"
)

// The lean section (issue #17). In the other proxy sections the load side
// (this process's Go HTTP client and the demo app, on one CPU) costs about
// 60 µs per request, three times what either proxy does: both proxies wait
// for it, and req/s says little about them. Here the load side is as lean
// as this host allows: wrk for the clients and nginx answering every
// request with 100 bytes for the app, both on the load CPU. The section
// runs twice: with the proxy on its whole CPU, and with the proxy held to
// half of it by a CPU quota, so that the proxy, not the load side, is the
// limit and req/s measures the proxy.

// leanBody is the static app's answer: 100 bytes, like /bytes?n=100.
var leanBody = strings.Repeat("x", 100)

// LeanReport is the lean section: one comparison with the proxy on its
// whole CPU, one with the proxy held to half of it.
type LeanReport struct {
	Tool  string         `json:"tool"` // wrk's version line
	Whole *CompareReport `json:"wholeCPU"`
	Half  *CompareReport `json:"halfCPU,omitempty"`
	// HalfSkipped says why there is no half-CPU run (no cgroup CPU
	// controller this process may use).
	HalfSkipped string `json:"halfCPUSkipped,omitempty"`
}

// errLeanSkipped wraps what the lean section needs and this host lacks
// (wrk, nginx): the run notes it and goes on. Any other error fails it.
var errLeanSkipped = errors.New("lean section skipped")

// leanCompare runs the lean section: nginx (one worker), rollbridged and
// rollbridged with its event loop off, each in front of a static app of
// its own, GET 100 B c64 keep-alive from wrk, interleaved.
func leanCompare(ctx context.Context, e *env) (*LeanReport, error) {
	if e.o.noNginx {
		return nil, fmt.Errorf("%w: it compares with nginx (-no-nginx)", errLeanSkipped)
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return nil, fmt.Errorf("%w: wrk is not installed (apt-get install wrk)", errLeanSkipped)
	}
	ngx, err := nginxBin()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errLeanSkipped, err)
	}
	defer e.pinLoad()()
	dir := filepath.Join(e.work, "lean")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	script, err := writeStaticApp(dir, ngx)
	if err != nil {
		return nil, err
	}
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	// nginx's own static app: started by this process, not by a daemon.
	appPort := freePort()
	app, err := e.startOn("lean-app", nil, e.loadCPUs(), "sh", script, strconv.Itoa(appPort))
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { _ = syscall.Kill(-app.Process.Pid, syscall.SIGTERM) })
	if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/ping", appPort)); err != nil {
		return nil, fmt.Errorf("static app: %w", err)
	}
	ng, ngURL, err := e.startNginxTo("lean-nginx", 1, e.proxyCPUs(), appPort)
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { _ = syscall.Kill(-ng.Process.Pid, syscall.SIGTERM) })
	ts := []target{{"nginx, 1 worker", ngURL, func() int { return ng.Process.Pid }, ""}}
	variants := []struct{ name, env, bin string }{{"rollbridged", "", ""}, {floorNetHTTPName, "ROLLBRIDGE_EVENT_LOOP=off", ""}}
	if e.o.abBin != "" {
		variants = append(variants, struct{ name, env, bin string }{"rollbridged from " + e.o.abBin, "", filepath.Join(e.o.abBin, "rollbridged")})
	}
	for _, v := range variants {
		s := daemonSpec{name: "lean-" + strconv.Itoa(len(ts)), top: "{}", cpus: e.proxyCPUs(), web: "exec sh " + script + " {{port}}", rollbridged: v.bin}
		if v.env != "" {
			s.env = []string{v.env}
		}
		d, url, err := e.startProxyDaemonSpec(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		stops = append(stops, func() { _ = d.cmd.Process.Signal(syscall.SIGTERM) })
		ts = append(ts, target{v.name, url, func() int { return d.cmd.Process.Pid }, d.allocs})
	}
	// wrk checks status codes, not bodies: check each path's answer once.
	for _, t := range ts {
		if err := checkBody(t.url+"/bytes?n=100", leanBody); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	rep := &LeanReport{Tool: wrkVersion(wrk)}
	// Every run adds one entry to LoadCPUBusy (0 when unknown), so that
	// it stays paired with Runs (see leanRuns).
	run := func(st *TargetStats, t target) {
		b0, t0 := cpuTicks(e.loadCPUs()[0])
		measureWith(st, t, func() load.Result { return runWrk(ctx, e, wrk, t.url+"/bytes?n=100", 64) })
		busy := 0.0
		if b1, t1 := cpuTicks(e.loadCPUs()[0]); t1 > t0 {
			busy = 100 * float64(b1-b0) / float64(t1-t0)
		}
		st.LoadCPUBusy = append(st.LoadCPUBusy, busy)
	}
	rep.Whole = compareWith("GET 100 B c64 keep-alive, wrk, static app", e.o.repeat, ts, run)
	q, err := newCPUQuota(dir, 0.5)
	if err != nil {
		rep.HalfSkipped = err.Error()
		fmt.Fprintln(os.Stderr, "bench: lean section's half-CPU runs skipped:", err)
	} else {
		fail := func(st *TargetStats, err error) {
			st.Runs = append(st.Runs, load.Result{Failures: 1, FirstFail: []load.Failure{{At: time.Now(), Error: "CPU quota: " + err.Error()}}})
			st.LoadCPUBusy = append(st.LoadCPUBusy, 0)
		}
		rep.Half = compareWith("the same, the proxy held to half its CPU (CPU quota)", e.o.repeat, ts, func(st *TargetStats, t target) {
			release, err := q.hold(t.pid())
			if err != nil {
				fail(st, err)
				return
			}
			run(st, t)
			if err := release(); err != nil {
				// This run counts as failed (and fails CI's check):
				// the proxy may still be held in the runs after it.
				r := &st.Runs[len(st.Runs)-1]
				r.Failures++
				r.FirstFail = append(r.FirstFail, load.Failure{At: time.Now(), Error: "CPU quota, letting go: " + err.Error()})
			}
		})
		if err := q.remove(); err != nil {
			return rep, fmt.Errorf("removing the CPU quota's cgroup %s: %w", q.dir, err)
		}
	}
	fmt.Fprintln(os.Stderr, "bench: lean done")
	return rep, nil
}

// cpuTicks are CPU cpu's busy and total ticks so far (/proc/stat; busy is
// all but idle and iowait).
func cpuTicks(cpu int) (busy, total uint64) {
	b, _ := os.ReadFile("/proc/stat")
	prefix := "cpu" + strconv.Itoa(cpu) + " "
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for i, f := range strings.Fields(line)[1:] {
			n, _ := strconv.ParseUint(f, 10, 64)
			if i < 8 { // user nice system idle iowait irq softirq steal (guest time is in user already)
				total += n
				if i != 3 && i != 4 {
					busy += n
				}
			}
		}
	}
	return busy, total
}

// compareWith is compare with its own load runner: repeat rounds, each
// target once per round, the first of each round one further along ts
// than the last round's (none always runs first, after the pause).
func compareWith(scenario string, repeat int, ts []target, run func(*TargetStats, target)) *CompareReport {
	rep := &CompareReport{Scenario: scenario, Targets: map[string]*TargetStats{}}
	for _, t := range ts {
		rep.Targets[t.name] = &TargetStats{}
		rep.Order = append(rep.Order, t.name)
	}
	for round := range repeat {
		for i := range ts {
			t := ts[(round+i)%len(ts)]
			run(rep.Targets[t.name], t)
			time.Sleep(200 * time.Millisecond) // let TIME_WAIT and GC settle between runs
		}
	}
	return rep
}

// writeStaticApp writes the static app: a script that starts nginx on the
// port it is given, answering every request with leanBody on keep-alive
// connections that never end (nginx's default would close one every 1000
// requests, and the proxies would dial again). It returns the script's
// path.
func writeStaticApp(dir, ngx string) (string, error) {
	conf := `worker_processes 1;
error_log @DIR@/error.log warn;
pid @DIR@/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 600s;
  client_body_temp_path @DIR@/body; proxy_temp_path @DIR@/proxy; fastcgi_temp_path @DIR@/fcgi; uwsgi_temp_path @DIR@/uwsgi; scgi_temp_path @DIR@/scgi;
  server {
    listen 127.0.0.1:@PORT@;
    default_type text/plain;
    location / { return 200 "` + leanBody + `"; }
  }
}
`
	tmpl := filepath.Join(dir, "static-app.conf.in")
	if err := os.WriteFile(tmpl, []byte(conf), 0o644); err != nil {
		return "", err
	}
	script := filepath.Join(dir, "static-app.sh")
	src := fmt.Sprintf(`#!/bin/sh
# The lean section's app: nginx answering every request with 100 bytes on port $1.
set -e
d=%[1]s/app-$1
mkdir -p "$d"
sed -e "s#@PORT@#$1#g" -e "s#@DIR@#$d#g" %[2]s > "$d/nginx.conf"
exec %[3]s -c "$d/nginx.conf" -g 'daemon off;'
`, dir, tmpl, ngx)
	return script, os.WriteFile(script, []byte(src), 0o755)
}

// checkBody fails unless url answers 200 with want.
func checkBody(url, want string) error {
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != 200 || b.String() != want {
		return fmt.Errorf("GET %s: HTTP %d, %d bytes, want 200 and %d bytes", url, res.StatusCode, b.Len(), len(want))
	}
	return nil
}

func wrkVersion(wrk string) string {
	out, _ := exec.Command(wrk, "-v").CombinedOutput() // wrk -v prints its version and exits 1
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// runWrk runs wrk (one thread, conns keep-alive connections, for the
// suite's -d rounded to whole seconds, at least one: wrk's -d takes no
// fractions) on the load CPU against url and reads its summary.
func runWrk(ctx context.Context, e *env, wrk, url string, conns int) load.Result {
	cmd := exec.CommandContext(ctx, wrk, "-t1", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(max(1, int(e.o.dur.Round(time.Second).Seconds())))+"s", "--latency", url)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := startOn(cmd, e.loadCPUs())
	if err == nil {
		err = cmd.Wait()
	}
	r, perr := parseWrk(out.String())
	if err == nil {
		err = perr
	}
	if err != nil {
		r.Failures++
		r.FirstFail = append(r.FirstFail, load.Failure{At: time.Now(), Error: fmt.Sprintf("wrk: %v: %.300s", err, out.String())})
	}
	return r
}

// parseWrk reads wrk's summary (with --latency): the requests, their rate
// (wrk's own Requests/sec, which it computes from microseconds; the
// printed run time has two decimals), the bytes read, the latency
// percentiles (50, 90 and 99 must be there; wrk prints no 99.9) and the
// failures (socket errors and answers other than 2xx or 3xx). What it
// cannot read is an error, never a zero.
func parseWrk(out string) (load.Result, error) {
	var r load.Result
	var seen, rate bool
	pct := map[string]*float64{"50%": &r.P50, "90%": &r.P90, "99%": &r.P99}
	got := map[string]bool{}
	count := func(s string) (int64, error) { return strconv.ParseInt(strings.TrimSuffix(s, ","), 10, 64) }
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			// 210722 requests in 5.01s, 30.13MB read
			n, err := count(f[0])
			d, err2 := time.ParseDuration(strings.TrimSuffix(f[3], ","))
			if err != nil || err2 != nil || d <= 0 {
				return r, fmt.Errorf("unreadable summary line %q", line)
			}
			r.Requests, r.Elapsed, seen = n, d, true
			if len(f) >= 6 && f[5] == "read" {
				r.Bytes, _ = wrkBytes(f[4])
			}
		case len(f) == 2 && f[0] == "Requests/sec:":
			x, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("unreadable line %q", line)
			}
			r.RPS, rate = x, true
		case len(f) == 2 && pct[f[0]] != nil:
			us, ok := wrkMicros(f[1])
			if !ok {
				return r, fmt.Errorf("unreadable latency line %q", line)
			}
			*pct[f[0]], got[f[0]] = us, true
		case len(f) >= 4 && f[0] == "Latency":
			if us, ok := wrkMicros(f[3]); ok {
				r.Max = us
			}
		case len(f) >= 2 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			if len(f) != 10 {
				return r, fmt.Errorf("unreadable line %q", line)
			}
			for i := 3; i < len(f); i += 2 {
				n, err := count(f[i])
				if err != nil {
					return r, fmt.Errorf("unreadable line %q", line)
				}
				r.Failures += n
			}
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx or 3xx responses:"):
			n, err := count(f[len(f)-1])
			if err != nil {
				return r, fmt.Errorf("unreadable line %q", line)
			}
			r.Failures += n
		}
	}
	if !seen || !rate {
		return r, errors.New("no summary in wrk's output")
	}
	if len(got) != len(pct) {
		return r, errors.New("no latency distribution in wrk's output (run it with --latency)")
	}
	return r, nil
}

// wrkBytes reads wrk's byte counts ("30.13MB": binary units, as wrk
// prints them).
func wrkBytes(s string) (int64, bool) {
	for _, u := range []struct {
		suffix string
		n      float64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			x, err := strconv.ParseFloat(v, 64)
			return int64(x * u.n), err == nil
		}
	}
	return 0, false
}

// wrkMicros reads one of wrk's durations ("812.00us", "1.23ms", "2.00s",
// "1.00m") in microseconds.
func wrkMicros(s string) (float64, bool) {
	for _, u := range []struct {
		suffix string
		us     float64
	}{{"us", 1}, {"ms", 1e3}, {"s", 1e6}, {"m", 60e6}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			x, err := strconv.ParseFloat(v, 64)
			return x * u.us, err == nil
		}
	}
	return 0, false
}

// leanRun is one run of a target in the lean section, with what was
// measured around it: TargetStats keeps CPU per request only for runs
// that had requests, so the lists are paired here by run.
type leanRun struct {
	rps, cpu, loadBusy float64
	ok                 bool // it had requests, and its CPU was counted
}

func leanRuns(t *TargetStats) []leanRun {
	out := make([]leanRun, len(t.Runs))
	j := 0
	for i, r := range t.Runs {
		out[i].rps = r.RPS
		if i < len(t.LoadCPUBusy) {
			out[i].loadBusy = t.LoadCPUBusy[i]
		}
		if r.Requests > 0 && j < len(t.CPUPerReq) {
			out[i].cpu, out[i].ok = t.CPUPerReq[j], true
			j++
		}
	}
	return out
}

// leanTable renders the lean section: req/s and CPU per request against
// nginx's in the same round, median [min–max] over the rounds, and how busy
// the proxy kept the CPU it had (its CPU per request times its req/s,
// against its share) and how busy the load CPU was (/proc/stat).
func (l *LeanReport) leanTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Lean load side: wrk and a static app (%s)\n", l.Tool)
	for _, c := range []struct {
		rep   *CompareReport
		share float64
	}{{l.Whole, 1}, {l.Half, 0.5}} {
		if c.rep == nil {
			fmt.Fprintf(&b, "\nHalf-CPU runs skipped: %s\n", l.HalfSkipped)
			continue
		}
		fmt.Fprintf(&b, "\n%s; %d interleaved runs, median [min–max]\n\n", c.rep.Scenario, len(c.rep.Targets[c.rep.Order[0]].Runs))
		b.WriteString("| proxy | req/s | req/s × nginx | CPU µs/req | CPU × nginx | proxy's CPU busy | load CPU busy | p99 ms | allocated B/req | failures |\n|---|---|---|---|---|---|---|---|---|---|\n")
		ng := leanRuns(c.rep.Targets[c.rep.Order[0]])
		for _, name := range c.rep.Order {
			t := c.rep.Targets[name]
			var rps, cpu, rpsX, cpuX, busy, loadBusy []float64
			for i, r := range leanRuns(t) {
				if !r.ok {
					continue
				}
				rps, cpu = append(rps, r.rps), append(cpu, r.cpu)
				busy, loadBusy = append(busy, r.rps*r.cpu/1e4/c.share), append(loadBusy, r.loadBusy)
				if i < len(ng) && ng[i].ok && ng[i].rps > 0 && ng[i].cpu > 0 {
					rpsX, cpuX = append(rpsX, r.rps/ng[i].rps), append(cpuX, r.cpu/ng[i].cpu)
				}
			}
			lo, m, hi := stats(rps)
			clo, cm, chi := stats(cpu)
			rlo, rm, rhi := stats(rpsX)
			plo, pm, phi := stats(cpuX)
			_, bm, _ := stats(busy)
			_, lm, _ := stats(loadBusy)
			alloc := "–"
			if len(t.AllocBytesPerReq) > 0 {
				_, ab, _ := stats(t.AllocBytesPerReq)
				alloc = fmt.Sprintf("%.0f", ab)
			}
			fmt.Fprintf(&b, "| %s | %.0f [%.0f–%.0f] | %.2f [%.2f–%.2f] | %.1f [%.1f–%.1f] | %.2f [%.2f–%.2f] | %.0f %% | %.0f %% | %.2f | %s | %d |\n",
				name, m, lo, hi, rm, rlo, rhi, cm, clo, chi, pm, plo, phi, bm, lm, t.median(func(r load.Result) float64 { return r.P99 })/1000, alloc, t.failures())
		}
	}
	return b.String()
}
