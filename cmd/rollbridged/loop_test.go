package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// The event loop, with two threads (ROLLBRIDGE_EVENT_LOOP=2), under the
// tests the request path must pass: a deploy and a crash of the web
// process under load, and a restart under load on systemd's sockets,
// without a failed request; and the loop serves most of it itself.
const loopEnv = "ROLLBRIDGE_EVENT_LOOP=2"

func TestEventLoopDeployAndCrashUnderLoad(t *testing.T) {
	f := newFixture(t, 0, "{}")
	src, _ := os.ReadFile(f.cfg)
	src = append(src, fmt.Sprintf(" + {statePath: %q}", f.statePath())...)
	if err := os.WriteFile(f.cfg, src, 0o644); err != nil {
		t.Fatal(err)
	}
	f.start([]string{loopEnv}, "")
	f.waitReady()
	f.deploy("v1")
	base := fmt.Sprintf("http://127.0.0.1:%d", f.status().Proxy.Port)
	load := startLoad(base+"/", "v1|v2", 8)
	testutil.Eventually(t, "load served", func() bool { return load.ok.Load() > 200 })
	f.deploy("v2")
	served := load.ok.Load()
	testutil.Eventually(t, "load served after the deploy", func() bool { return load.ok.Load() > served+200 })

	webPid := func() int {
		for _, r := range f.status().Releases {
			if r.ReleaseID == "v2" && len(r.Processes) > 0 {
				return r.Processes[0].Pid
			}
		}
		return 0
	}
	pid := webPid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the web process %d: %v", pid, err)
	}
	testutil.Eventually(t, fmt.Sprintf("web restarted (pid %d replaced)", pid), func() bool {
		p := webPid()
		return p != 0 && p != pid
	})
	served = load.ok.Load()
	testutil.Eventually(t, "load served after the crash", func() bool { return load.ok.Load() > served+200 })
	fails := load.end()
	if len(fails) > 0 {
		t.Errorf("%d of %d requests failed, first: %q", len(fails), int(load.ok.Load())+len(fails), fails[:min(len(fails), 5)])
	}
	el := f.status().Proxy.EventLoop
	if el == nil || el.Threads != 2 {
		t.Fatalf("status shows eventLoop %+v: want the loop running with 2 threads", el)
	}
	t.Logf("%d requests answered; the loop's 2 threads served %d themselves and handed %d connections off", load.ok.Load(), el.Served, el.HandedOff)
	if el.Served < uint64(load.ok.Load())/2 {
		t.Errorf("the loop served %d of %d requests: it should serve most plain GETs", el.Served, load.ok.Load())
	}
}

func TestEventLoopRestartUnderLoad(t *testing.T) {
	f := restartUnderLoad(t, []string{loopEnv})
	if el := f.serving().Proxy.EventLoop; el == nil || el.Served == 0 {
		t.Errorf("after the restart, status shows the loop's work as %+v: it served nothing", el)
	}
}

// ROLLBRIDGE_EVENT_LOOP's values.
func TestEventLoopThreadsFromEnv(t *testing.T) {
	cpus := max(1, runtime.GOMAXPROCS(0)-1) // the threads "on" runs
	for _, tc := range []struct {
		env     map[string]string
		want    int
		wantErr string
	}{
		{env: nil, want: cpus}, // on by default
		{env: map[string]string{envEventLoop: "off"}, want: 0},
		{env: map[string]string{envEventLoop: "on"}, want: cpus},
		{env: map[string]string{envEventLoop: " 3 "}, want: 3},
		{env: map[string]string{envEventLoop: "0"}, wantErr: `ROLLBRIDGE_EVENT_LOOP="0": want "on"`},
		{env: map[string]string{envEventLoop: "257"}, wantErr: "a thread count from 1 to 256"},
		{env: map[string]string{envEventLoop: "yes"}, wantErr: `ROLLBRIDGE_EVENT_LOOP="yes"`},
	} {
		got, err := eventLoopThreads(func(k string) string { return tc.env[k] })
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: got %d, %v; want an error with %q", tc.env, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: got %d, %v; want %d", tc.env, got, err, tc.want)
		}
	}
}

// An invalid ROLLBRIDGE_EVENT_LOOP stops the daemon at its start with the
// values it takes, before it binds anything.
func TestEventLoopInvalidValue(t *testing.T) {
	cmd := exec.Command(daemonBin, "-c", filepath.Join(t.TempDir(), "none.jsonnet"))
	cmd.Env = append(os.Environ(), "ROLLBRIDGE_EVENT_LOOP=fast")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `ROLLBRIDGE_EVENT_LOOP="fast": want "on" (one thread per CPU but one, the default), "off"`) {
		t.Errorf("got %v: %s", err, out)
	}
}
