package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// TestWebCrashUnderLoad: the active release's web process is killed while
// clients keep sending. With holding on (the default proxy.holdTimeoutMs)
// the requests that arrive while it restarts wait for it and none fails;
// with holding off (holdTimeoutMs: 0) they fail as in the spec (502/503),
// which shows the load really hit the restart.
func TestWebCrashUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name, proxy string
		hold        bool
	}{{"holding on", "{}", true}, {"holding off", "{holdTimeoutMs: 0}", false}} {
		t.Run(tc.name, func(t *testing.T) {
			f, base, _ := trafficFixture(t, tc.proxy)
			webPid := func() int {
				if rs := f.status().Releases; len(rs) > 0 && len(rs[0].Processes) > 0 {
					return rs[0].Processes[0].Pid
				}
				return 0
			}
			load := startLoad(base+"/", "v1", 8)
			testutil.Eventually(t, "load served", func() bool { return load.ok.Load() > 100 })
			pid := webPid()
			if pid == 0 {
				t.Fatal("status shows no web pid")
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, fmt.Sprintf("web restarted (pid %d replaced)", pid), func() bool {
				p := webPid()
				return p != 0 && p != pid
			})
			served := load.ok.Load()
			testutil.Eventually(t, "load served after the restart", func() bool { return load.ok.Load() > served+100 })
			fails := load.end()
			switch {
			case tc.hold && len(fails) > 0:
				t.Errorf("holding on: %d requests failed across the web crash, first: %s", len(fails), fails[0])
			case !tc.hold && len(fails) == 0:
				t.Error("holding off: no request failed while the web process was down; the load missed the restart")
			case !tc.hold && !strings.HasPrefix(fails[0], "50"):
				t.Errorf("holding off: first failure %q, want a 502 or 503 from the proxy", fails[0])
			}
			if ev := f.events(); tc.hold && !strings.Contains(ev, `"traffic paused"`) {
				t.Errorf("holding on: no traffic paused event:\n%s", ev)
			}
		})
	}
}
