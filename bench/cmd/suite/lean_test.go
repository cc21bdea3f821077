package main

import (
	"os"
	"os/exec"
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
	if want := 210722 / 5.01; r.RPS < want-1 || r.RPS > want+1 {
		t.Errorf("req/s %.1f, want %.1f", r.RPS, want)
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
	for _, bad := range []string{"", "unable to connect to 127.0.0.1:1 Connection refused\n", "  12 requests in soon, 1MB read\n"} {
		if _, err := parseWrk(bad); err == nil {
			t.Errorf("parseWrk(%q) took it", bad)
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
	defer q.remove()
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
	undo, err := q.hold(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	held := share()
	undo()
	if held > 0.35 {
		t.Errorf("CPU share %.2f held at 0.2, want about 0.2", held)
	}
	if b, _ := os.ReadFile(q.dir + "/cgroup.procs"); len(strings.TrimSpace(string(b))) != 0 {
		t.Errorf("after undo the cgroup still holds %q", b)
	}
}
