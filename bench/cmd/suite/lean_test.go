package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wrkSample is wrk 4.1.0's output with --latency, with errors.
const wrkSample = `Running 5s test @ http://127.0.0.1:19004/bytes?n=100
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.48ms  312.11us   1.02s    89.20%
    Req/Sec    42.35k     1.10k   44.01k    78.00%
  Latency Distribution
     50%    1.40ms
     75%    1.60ms
     90%    1.85ms
     99%  812.50us
  210722 requests in 5.01s, 30.13MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  42060.28
Transfer/sec:      6.01MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 210722 || r.Elapsed != 5010*time.Millisecond {
		t.Errorf("requests %d in %v, want 210722 in 5.01s", r.Requests, r.Elapsed)
	}
	if r.RPS != 42060.28 {
		t.Errorf("req/s %.2f, want wrk's 42060.28", r.RPS)
	}
	if want := 30.13 * (1 << 20); r.Bytes != int64(want) {
		t.Errorf("bytes %d, want 30.13 MiB", r.Bytes)
	}
	if r.P50 != 1400 || r.P90 != 1850 || r.P99 != 812.5 || r.Max != 1.02e6 {
		t.Errorf("latencies p50 %v p90 %v p99 %v max %v µs, want 1400 1850 812.5 1020000", r.P50, r.P90, r.P99, r.Max)
	}
	if r.Failures != 15 {
		t.Errorf("failures %d, want 15 (10 socket errors, 5 non-2xx)", r.Failures)
	}
	clean := strings.NewReplacer("  Socket errors: connect 1, read 2, write 3, timeout 4\n", "", "  Non-2xx or 3xx responses: 5\n", "").Replace(wrkSample)
	if r, err := parseWrk(clean); err != nil || r.Failures != 0 {
		t.Errorf("without error lines: %d failures, %v", r.Failures, err)
	}
	// What it cannot read is an error, never a zero.
	for _, bad := range []string{
		"",
		"unable to connect to 127.0.0.1:1 Connection refused\n",
		strings.Replace(wrkSample, "5.01s", "soon", 1),
		strings.Replace(wrkSample, "     99%  812.50us\n", "", 1), // no p99
		strings.Replace(wrkSample, "50%    1.40ms", "50%    fast", 1),
		strings.Replace(wrkSample, "read 2,", "read two,", 1),
		strings.Replace(wrkSample, "responses: 5", "responses: five", 1),
		strings.Replace(wrkSample, "Requests/sec:  42060.28\n", "", 1),
	} {
		if _, err := parseWrk(bad); err == nil {
			t.Errorf("parseWrk took %q", bad)
		}
	}
}

// TestCPUQuotaHoldsAProcessGroup runs a spinning process group under a
// quota of a fifth of a CPU and checks it got no more than that (with a
// wide margin), and that it leaves the cgroup when let go. (How much it
// gets afterwards depends on the rest of the machine: not checked.)
func TestCPUQuotaHoldsAProcessGroup(t *testing.T) {
	q, err := newCPUQuota(t.Name(), 0.2)
	if err != nil {
		t.Skipf("no cgroup CPU quota here (needs root and a cgroup CPU controller): %v", err)
	}
	defer func() { _ = q.remove() }()
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	share := func() float64 {
		c0 := cpuTime(cmd.Process.Pid)
		t0 := time.Now()
		time.Sleep(time.Second)
		return float64(cpuTime(cmd.Process.Pid)-c0) / float64(time.Since(t0))
	}
	release, err := q.hold(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid)); !strings.Contains(string(b), filepath.Base(q.dir)) {
		t.Errorf("held, the process's cgroups are %q, without %s", b, q.dir)
	}
	held := share()
	throttled := cgroupStat(t, q.dir, "nr_throttled")
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if held > 0.35 {
		t.Errorf("CPU share %.2f held at 0.2, want about 0.2", held)
	}
	if throttled == 0 {
		t.Error("the quota never throttled the spinning process")
	}
	if b, _ := os.ReadFile(q.dir + "/cgroup.procs"); len(strings.TrimSpace(string(b))) != 0 {
		t.Errorf("released, the cgroup still holds %q", b)
	}
	if err := q.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(q.dir); !os.IsNotExist(err) {
		t.Errorf("removed, %s is still there (%v)", q.dir, err)
	}
}

// TestCPUQuotaRemoveLetsGoOfForks: what a held process forked is in the
// quota too; remove moves it out (to where its parent came from) and
// deletes the cgroup, and a quota left by a suite that is gone is removed
// by the next one.
func TestCPUQuotaRemoveLetsGoOfForks(t *testing.T) {
	q, err := newCPUQuota(t.Name(), 0.5)
	if err != nil {
		t.Skipf("no cgroup CPU quota here (needs root and a cgroup CPU controller): %v", err)
	}
	defer func() { _ = q.remove() }()
	cmd := exec.Command("sh", "-c", "read x; sleep 60 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	if _, err := q.hold(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	_, _ = in.Write([]byte("go\n")) // now it forks sleep, inside the quota
	deadline := time.Now().Add(5 * time.Second)
	for countProcs(t, q.dir) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := countProcs(t, q.dir); n != 2 {
		t.Fatalf("%d processes in the quota, want the shell and its sleep", n)
	}
	// A quota cgroup named after a suite that is gone (pid 0 never runs one).
	stale := filepath.Join(q.root, quotaPrefix+"0-stale")
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := q.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(q.dir); !os.IsNotExist(err) {
		t.Errorf("removed, %s is still there (%v)", q.dir, err)
	}
	q2, err := newCPUQuota(t.Name()+"2", 0.5)
	if err != nil {
		t.Fatal(err)
	}
	_ = q2.remove()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		_ = os.Remove(stale)
		t.Errorf("the stale quota %s was not removed (%v)", stale, err)
	}
}

func countProcs(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Fields(string(b)))
}

// cgroupStat reads one counter of dir's cpu.stat.
func cgroupStat(t *testing.T, dir, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatalf("%s/cpu.stat has no %s: %q", dir, key, b)
	return 0
}
