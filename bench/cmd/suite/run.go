package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge-go/bench/load"
	"github.com/rollbridge/rollbridge-go/internal/allocstats"
)

// Report is everything one suite run measured.
type Report struct {
	Started     time.Time      `json:"started"`
	Machine     string         `json:"machine"`
	Build       string         `json:"build,omitempty"` // the suite's commit, from its build info ("+dirty": uncommitted changes)
	LoadAvg     string         `json:"loadAverage"`     // /proc/loadavg's 1, 5 and 15 minute figures at the start
	LoadAvgEnd  string         `json:"loadAverageEnd"`  // and at the end
	SectionLoad []SectionLoad  `json:"sectionLoad"`     // and as each section started
	Options     map[string]any `json:"options"`
	// Pinning says where the proxy sections ran what ("off" when unpinned).
	Pinning   string           `json:"pinning"`
	Proxy     []ProxyScenario  `json:"proxy"`
	Cores     *CompareReport   `json:"cores,omitempty"`
	Floor     *CompareReport   `json:"floor,omitempty"`
	Lean      *LeanReport      `json:"lean,omitempty"`
	Startup   *StartupReport   `json:"startup,omitempty"`
	Deploy    *DeployReport    `json:"deployUnderLoad,omitempty"`
	Runtime   *RuntimeReport   `json:"runtime,omitempty"`
	Drain     *DrainReport     `json:"drain,omitempty"`
	Footprint *FootprintReport `json:"footprint,omitempty"`
	Idle      *IdleReport      `json:"idle,omitempty"`
	Observe   *ObserveReport   `json:"observability,omitempty"`
	Notes     []string         `json:"notes,omitempty"`
}

// SectionLoad is the load average as a section started.
type SectionLoad struct {
	Section string    `json:"section"`
	At      time.Time `json:"at"`
	LoadAvg string    `json:"loadAverage"`
}

// ProxyScenario is one load shape against every target.
type ProxyScenario struct {
	Name    string                  `json:"name"`
	Targets map[string]*TargetStats `json:"targets"`
}

// TargetStats aggregates the repeats of one scenario on one target.
type TargetStats struct {
	Runs      []load.Result `json:"runs"`
	CPUPerReq []float64     `json:"cpuUsPerRequest"` // of the target process(es), per run
	// CPUUserPerReq is the user-space part of CPUPerReq (the rest is
	// system time: the kernel's work in the process's system calls).
	CPUUserPerReq []float64 `json:"cpuUserUsPerRequest,omitempty"`
	// AllocsPerReq and AllocBytesPerReq are rollbridged's heap allocations
	// during a run divided by its requests, per run (from the daemon's
	// ROLLBRIDGE_ALLOCSTATS_SOCKET; everything the daemon allocated, so
	// health checks and supervision too, a negligible share at these rates).
	AllocsPerReq     []float64 `json:"allocsPerRequest,omitempty"`
	AllocBytesPerReq []float64 `json:"allocBytesPerRequest,omitempty"`
	// LoadCPUBusy is how busy the load generator's CPU was during each
	// run, in percent (the lean section): near 100, the load side and not
	// the proxy set the pace.
	LoadCPUBusy []float64 `json:"loadCpuBusyPercent,omitempty"`
}

// target is one thing a load run goes to.
type target struct {
	name, url string
	pid       func() int // the process (group) whose CPU is counted
	allocs    string     // rollbridged's allocation counter socket ("" for others)
}

// measure runs one load run against t and adds it to st.
func measure(ctx context.Context, st *TargetStats, t target, cfg load.Config) {
	measureWith(st, t, func() load.Result { return load.Run(ctx, cfg) })
}

// measureWith counts t's CPU time and allocations around run (one load
// run against t, by whichever load generator) and adds the run to st.
func measureWith(st *TargetStats, t target, run func() load.Result) {
	var a0 allocstats.Counters
	var aerr error
	if t.allocs != "" {
		a0, aerr = allocstats.Fetch(t.allocs)
	}
	u0, s0 := cpuTimes(t.pid())
	r := run()
	u1, s1 := cpuTimes(t.pid())
	st.Runs = append(st.Runs, r)
	if r.Requests > 0 {
		st.CPUPerReq = append(st.CPUPerReq, float64((u1-u0+s1-s0).Microseconds())/float64(r.Requests))
		st.CPUUserPerReq = append(st.CPUUserPerReq, float64((u1-u0).Microseconds())/float64(r.Requests))
	}
	if t.allocs != "" && aerr == nil && r.Requests > 0 {
		if a1, err := allocstats.Fetch(t.allocs); err == nil {
			d := a1.Sub(a0)
			st.AllocsPerReq = append(st.AllocsPerReq, float64(d.Objects)/float64(r.Requests))
			st.AllocBytesPerReq = append(st.AllocBytesPerReq, float64(d.Bytes)/float64(r.Requests))
		}
	}
}

func (t *TargetStats) rps() (lo, med, hi float64) {
	var v []float64
	for _, r := range t.Runs {
		v = append(v, r.RPS)
	}
	return stats(v)
}

func (t *TargetStats) median(f func(load.Result) float64) float64 {
	var v []float64
	for _, r := range t.Runs {
		v = append(v, f(r))
	}
	_, m, _ := stats(v)
	return m
}

func (t *TargetStats) failures() int64 {
	var n int64
	for _, r := range t.Runs {
		n += r.Failures
	}
	return n
}

func stats(v []float64) (lo, med, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}

// buildCommit is the commit this binary was built from, when go build
// recorded it, or else (GOFLAGS=-buildvcs=false, say) the commit checked
// out where the suite runs, as make bench runs it from the checkout that
// built the binaries. "+dirty": with uncommitted changes to tracked files.
func buildCommit() string {
	var rev, dirty string
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, st := range bi.Settings {
			switch {
			case st.Key == "vcs.revision":
				rev = st.Value
			case st.Key == "vcs.modified" && st.Value == "true":
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		out, err := exec.Command("git", "rev-parse", "HEAD").Output()
		if err != nil {
			return ""
		}
		rev = strings.TrimSpace(string(out)) + " (checkout)"
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			dirty = "+dirty"
		}
	}
	return rev + dirty
}

func machine() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	model := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
			break
		}
	}
	n := strings.Count(string(b), "processor\t:")
	return fmt.Sprintf("%d × %s", n, model)
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func run(ctx context.Context, o options) (*Report, error) {
	rep := &Report{Started: time.Now().UTC(), Machine: machine(), Build: buildCommit(), LoadAvg: loadAvg(),
		Options: map[string]any{"repeat": o.repeat, "durationS": o.dur.Seconds(), "deploys": o.deploys, "runtimeDeploys": o.runtimeDeploys, "starts": o.starts, "pin": o.pin, "quick": o.quick}}
	defer func() { rep.LoadAvgEnd = loadAvg() }()
	e, err := setup(o)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return rep, err
	}
	if e.ngURL == "" {
		rep.Notes = append(rep.Notes, "nginx was not available: no nginx column")
	}
	rep.Pinning = "off"
	if e.pin != nil {
		rep.Pinning = e.pin.String()
	} else if o.pin && o.wantsPinning() {
		rep.Pinning = "off: could not pin (fewer than 2 CPUs, or sched_setaffinity refused; see the log)"
	}
	// want also notes the load average as a section starts: on a shared
	// machine it says which sections ran under whose load.
	want := func(s string) bool {
		if !strings.Contains(o.sections, s) {
			return false
		}
		rep.SectionLoad = append(rep.SectionLoad, SectionLoad{Section: s, At: time.Now().UTC(), LoadAvg: loadAvg()})
		return true
	}
	if want("proxy") {
		rep.Proxy = proxyMatrix(ctx, e)
	}
	if want("cores") {
		if e.pin == nil {
			rep.Notes = append(rep.Notes, "cores section skipped: it needs pinning (-pin, 2 CPUs)")
		} else if rep.Cores, err = coresCompare(ctx, e); err != nil {
			return rep, fmt.Errorf("cores: %w", err)
		}
	}
	if want("floor") {
		if e.pin == nil {
			rep.Notes = append(rep.Notes, "floor section skipped: it needs pinning (-pin, 2 CPUs)")
		} else if e.ngURL == "" {
			rep.Notes = append(rep.Notes, "floor section skipped: it compares with nginx, which is not available")
		} else if rep.Floor, err = floorCompare(ctx, e); err != nil {
			return rep, fmt.Errorf("floor: %w", err)
		}
	}
	if want("lean") {
		if e.pin == nil {
			rep.Notes = append(rep.Notes, "lean section skipped: it needs pinning (-pin, 2 CPUs)")
		} else if rep.Lean, err = leanCompare(ctx, e); errors.Is(err, errLeanSkipped) {
			// Like nginx, wrk is an outside tool: without it the
			// section is noted as skipped, not the run failed.
			rep.Notes = append(rep.Notes, err.Error())
			fmt.Fprintln(os.Stderr, "bench:", err)
		} else if err != nil {
			return rep, fmt.Errorf("lean: %w", err)
		} else if rep.Lean.HalfSkipped != "" {
			rep.Notes = append(rep.Notes, "lean section's half-CPU runs skipped: "+rep.Lean.HalfSkipped)
		}
	}
	if want("observe") {
		if rep.Observe, err = observeCost(ctx, e); err != nil {
			return rep, fmt.Errorf("observability: %w", err)
		}
	}
	if want("startup") {
		if rep.Startup, err = startup(ctx, e); err != nil {
			return rep, fmt.Errorf("startup: %w", err)
		}
	}
	if want("deploy") {
		if rep.Deploy, err = deployUnderLoad(ctx, e); err != nil {
			return rep, fmt.Errorf("deploy under load: %w", err)
		}
	}
	if want("runtime") {
		if rep.Runtime, err = runtimeDeploys(ctx, e); err != nil {
			return rep, fmt.Errorf("runtime: %w", err)
		}
	}
	if want("footprint") {
		if rep.Footprint, err = footprint(ctx, e); err != nil {
			return rep, fmt.Errorf("footprint: %w", err)
		}
	}
	if want("idle") {
		if rep.Idle, err = idleCost(ctx, e); err != nil {
			return rep, fmt.Errorf("idle cost: %w", err)
		}
	}
	if want("drain") {
		if rep.Drain, err = drainAtScale(ctx, e); err != nil {
			return rep, fmt.Errorf("drain: %w", err)
		}
	}
	return rep, nil
}

// proxyMatrix runs every load shape against the app directly, through
// rollbridged and through nginx, interleaving targets within each repeat so
// that machine noise hits them alike. With pinning, the proxies run on
// their CPU and this process and the app on theirs.
func proxyMatrix(ctx context.Context, e *env) []ProxyScenario {
	defer e.pinLoad()()
	type shape struct {
		name, path string
		c          int
		keepAlive  bool
		body       []byte
	}
	var shapes []shape
	for _, size := range []struct{ name, path string }{{"100 B", "/bytes?n=100"}, {"1 MiB", "/bytes?n=1048576"}} {
		for _, c := range []int{1, 64, 256} {
			for _, ka := range []bool{true, false} {
				mode := "keep-alive"
				if !ka {
					mode = "new conn"
				}
				shapes = append(shapes, shape{fmt.Sprintf("GET %s c%d %s", size.name, c, mode), size.path, c, ka, nil})
			}
		}
	}
	upload := make([]byte, 1<<20)
	for _, c := range []int{1, 64} {
		shapes = append(shapes, shape{fmt.Sprintf("POST 1 MiB c%d keep-alive", c), "/upload", c, true, upload})
	}
	targets := []target{
		{"direct", e.appURL, func() int { return e.app.Process.Pid }, ""},
		{"rollbridged", e.prbURL, func() int { return e.prb.cmd.Process.Pid }, e.prb.allocs},
	}
	if e.ngURL != "" {
		targets = append(targets, target{"nginx", e.ngURL, func() int { return e.nginx.Process.Pid }, ""})
	}
	var out []ProxyScenario
	for _, s := range shapes {
		if e.o.match != "" && !strings.Contains(s.name, e.o.match) {
			continue
		}
		sc := ProxyScenario{Name: s.name, Targets: map[string]*TargetStats{}}
		for i := 0; i < e.o.repeat; i++ {
			for _, t := range targets {
				st := sc.Targets[t.name]
				if st == nil {
					st = &TargetStats{}
					sc.Targets[t.name] = st
				}
				measure(ctx, st, t, load.Config{URL: t.url + s.path, Concurrency: s.c, Duration: e.o.dur, KeepAlive: s.keepAlive, Body: s.body})
				time.Sleep(200 * time.Millisecond) // let TIME_WAIT and GC settle between runs
			}
		}
		fmt.Fprintf(os.Stderr, "bench: %s done\n", s.name)
		out = append(out, sc)
	}
	return out
}
