package supervisor

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestSingletonPortsReachEveryProcess: a singleton's port is allocated at
// the start of the deploy, so every process of the release sees it as
// {{ports.<id>}} and ROLLBRIDGE_<ID>_PORT (a run of other characters in the
// id becomes one "_"), and a fixed-port singleton redeploys.
func TestSingletonPortsReachEveryProcess(t *testing.T) {
	fixed := 20000 + rand.IntN(30)*200 + 199 // the top of some test's web range; webConfig's starts at the bottom
	web := appCmd(t)
	src := fmt.Sprintf(`{application: 'test', proxy: {port: 0, drainTimeoutMs: 10000, forceStopTimeoutMs: 3000},
	  processes: [
	    {id: 'bg--jobs.main', policy: 'singleton', command: 'exec sleep 1000', port: %d},
	    {id: 'web', policy: 'proxied', command: %q, port: %s, health: {intervalMs: 20},
	     env: {ROLLBRIDGE_X_FROM_TEMPLATE: '{{ports.bg--jobs.main}}'}},
	  ]}`, fixed, web, portRange())
	h := newHarness(t, src)
	for _, id := range []string{"v1", "v2"} {
		h.deploy(id)
		st := h.status()
		if p := st.Singletons[0].Process.Port; p == nil || *p != fixed || st.Singletons[0].ReleaseID != id {
			t.Fatalf("%s: singleton %s, want port %d", id, dump(st.Singletons), fixed)
		}
		_, env := h.get("/env")
		for _, want := range []string{fmt.Sprintf("ROLLBRIDGE_BG_JOBS_MAIN_PORT=%d", fixed), fmt.Sprintf("ROLLBRIDGE_X_FROM_TEMPLATE=%d", fixed)} {
			if !strings.Contains(env, want) {
				t.Errorf("%s: web env lacks %s:\n%s", id, want, env)
			}
		}
	}
}

func TestEnvName(t *testing.T) {
	for id, want := range map[string]string{
		"web": "WEB", "background-jobs-main": "BACKGROUND_JOBS_MAIN", "bg--jobs.main": "BG_JOBS_MAIN",
		"a_b": "A_B", "a__b": "A_B", "-x-": "_X_", "v2": "V2", "ça": "_A", "ı": "_",
	} {
		if got := envName(id); got != want {
			t.Errorf("envName(%q) = %q, want %q", id, got, want)
		}
	}
}
