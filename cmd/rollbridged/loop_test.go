package main

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// The experimental event loop (ROLLBRIDGE_EXPERIMENTAL_LOOP=1) under the
// tests the request path must pass: a deploy and a crash of the web
// process under load, and a restart under load on systemd's sockets,
// without a failed request; and the loop serves most of it itself.
const loopEnv = "ROLLBRIDGE_EXPERIMENTAL_LOOP=1"

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
	if el == nil {
		t.Fatal("status shows no eventLoop: the loop is not running")
	}
	t.Logf("%d requests answered; the loop served %d itself and handed %d connections off", load.ok.Load(), el.Served, el.HandedOff)
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
