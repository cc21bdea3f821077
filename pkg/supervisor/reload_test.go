package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/config"
)

// reloading is a harness whose Supervisor re-reads the config file at every
// deploy and rollback, and which records what it adopts.
type reloading struct {
	*harness
	base string

	mu      sync.Mutex
	adopted []*config.Config
}

func newReloading(t *testing.T, src string) *reloading {
	t.Helper()
	r := &reloading{base: src}
	var h *harness
	h = newHarnessOpts(t, src, func(o *Options) {
		o.LoadConfig = func(context.Context) (*config.Config, error) { return config.Load(h.path, h.env) }
		o.OnConfig = func(c *config.Config) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.adopted = append(r.adopted, c)
		}
	})
	r.harness = h
	return r
}

// edit writes the base config extended by patch to the file, as an
// operator would, without telling the supervisor.
func (r *reloading) edit(patch string) {
	r.t.Helper()
	if err := os.WriteFile(r.path, []byte("("+r.base+") + "+patch), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *reloading) lastAdopted() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.adopted) == 0 {
		return nil
	}
	return r.adopted[len(r.adopted)-1]
}

// mark is a patch that sets ROLLBRIDGE_X_MARK (which the app's /env shows)
// on the proxied process, and worker's stop signal.
func mark(value, workerSignal string) string {
	return fmt.Sprintf(`{processes: [p + (if p.id == 'web' then {env+: {ROLLBRIDGE_X_MARK: %q}} else {stopSignal: %q}) for p in super.processes]}`, value, workerSignal)
}

// TestDeployRereadsTheConfig: a compatible change in the file reaches the
// next release without SIGHUP, and retires the previous one with the new
// stop settings; the config is adopted only by a deploy that succeeded.
func TestDeployRereadsTheConfig(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "record")
	worker := fmt.Sprintf(`trap 'echo "TERM $ROLLBRIDGE_RELEASE_ID" >> %[1]s' TERM; trap 'echo "INT $ROLLBRIDGE_RELEASE_ID" >> %[1]s; exit 0' INT; while :; do sleep 0.02; done`, rec)
	h := newReloading(t, webConfig(t, fmt.Sprintf(`[{id: 'worker', command: %q}]`, worker)))
	h.edit(mark("one", "SIGTERM"))
	h.deploy("v1")
	if _, env := h.get("/env"); !strings.Contains(env, "ROLLBRIDGE_X_MARK=one") {
		t.Errorf("v1 env lacks the mark:\n%s", env)
	}

	// The worker now stops on SIGINT: v1's worker, started when it was
	// SIGTERM, retires with the new signal.
	h.edit(mark("two", "SIGINT"))
	h.deploy("v2")
	if _, env := h.get("/env"); !strings.Contains(env, "ROLLBRIDGE_X_MARK=two") {
		t.Errorf("v2 env lacks the new mark:\n%s", env)
	}
	testutil.Eventually(t, "v1's worker stopped", func() bool { return strings.Contains(readFile(t, rec), "v1") })
	if got := readFile(t, rec); got != "INT v1\n" {
		t.Errorf("v1's worker got %q, want only the reloaded stop signal", got)
	}
	if a := h.lastAdopted(); a == nil || a.ProcessByID("worker").StopSignal != "SIGINT" || h.sup.cfg.Load() != a {
		t.Errorf("adopted %+v", a)
	}
	reloaded := h.events("config reloaded")
	if len(reloaded) == 0 || reloaded[len(reloaded)-1].Data["releaseId"] != "v2" || !strings.Contains(fmt.Sprint(reloaded[len(reloaded)-1].Data["changed"]), "processes[0] (web).env") {
		t.Errorf("config reloaded events: %s", dump(reloaded))
	}

	// A deploy that fails adopts nothing.
	adopted := h.sup.cfg.Load()
	h.edit(mark("three", "SIGINT") + healthTimeout(3000))
	if _, err := h.tryDeploy("v3", map[string]string{"health": "503"}); err == nil {
		t.Fatal("unhealthy deploy succeeded")
	}
	if h.sup.cfg.Load() != adopted {
		t.Error("a failed deploy adopted its config")
	}
}

// TestDeployRefusesWhatNeedsARestart: listener and topology changes, and a
// file that does not load, fail the deploy before anything starts.
func TestDeployRefusesWhatNeedsARestart(t *testing.T) {
	h := newReloading(t, webConfig(t, `[{id: 'worker', command: 'exec sleep 1000'}, {id: 'svc', policy: 'service', command: 'exec sleep 1000', port: {from: 7100, to: 7199}}]`))
	h.edit(`{}`)
	h.deploy("v1")
	for _, tc := range []struct {
		name, patch, want string
	}{
		{"proxy port", `{proxy+: {port: 9}}`, "config changes to proxy.port cannot be applied live; restart the daemon before deploying"},
		{"policy", `{processes: [p + (if p.id == 'worker' then {policy: 'singleton'} else {}) for p in super.processes]}`, "config changes to processes[1] (worker).policy cannot"},
		{"process added", `{processes+: [{id: 'extra', command: 'x'}]}`, `processes changed from ["web","worker","svc"] to ["web","worker","svc","extra"]`},
		{"service port", `{processes: [p + (if p.id == 'svc' then {port: {from: 7300, to: 7399}} else {}) for p in super.processes]}`, "processes[2] (svc).port does not fit the running service, which keeps its port (7100)"},
		{"broken file", `{processes: error 'boom'}`, "re-read the config for this deploy:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.edit(tc.patch)
			before := len(h.events("deploy starting"))
			_, err := h.tryDeploy("v2", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if tc.name != "broken file" && !errors.Is(err, ErrConflict) {
				t.Errorf("%v is not a conflict", err)
			}
			if len(h.events("deploy starting")) != before {
				t.Error("the refused deploy started")
			}
		})
	}
	if _, body := h.get("/"); body != "v1" {
		t.Errorf("serving %q", body)
	}
	// Reordering the processes is no change.
	h.edit(`{processes: std.reverse(super.processes)}`)
	h.deploy("v2")
}

// TestRollbackUsesTheLastGoodConfig: a broken or incompatible file never
// blocks a rollback, which then says which config it used.
func TestRollbackUsesTheLastGoodConfig(t *testing.T) {
	h := newReloading(t, webConfig(t, `[]`))
	h.edit(mark("good", "SIGTERM"))
	h.deploy("v1")
	h.deploy("v2")
	h.edit(`{processes: error 'half-written'}`)
	var progress []string
	res, err := h.sup.Rollback(context.Background(), "", func(msg string, _ map[string]any) { progress = append(progress, msg) })
	if err != nil {
		t.Fatalf("rollback with a broken config: %v", err)
	}
	if res.ActiveReleaseID != "v1" || !strings.Contains(res.ConfigProblem, "the rollback used the last good config") || !strings.Contains(res.ConfigProblem, "half-written") {
		t.Errorf("result %s", dump(res))
	}
	if !strings.Contains(strings.Join(progress, ","), "config reload refused") {
		t.Errorf("progress %v lacks the refused reload", progress)
	}
	refused := h.events("config reload refused")
	if len(refused) != 1 || refused[0].Data["command"] != "rollback" || refused[0].Data["kept"] != "the last good config" {
		t.Errorf("events: %s", dump(refused))
	}
	if _, env := h.get("/env"); !strings.Contains(env, "ROLLBRIDGE_X_MARK=good") {
		t.Errorf("rolled-back release does not run the last good config:\n%s", env)
	}
	// An incompatible file too.
	h.edit(`{proxy+: {port: 9}}`)
	if res, err := h.sup.Rollback(context.Background(), "v2", nil); err != nil || !strings.Contains(res.ConfigProblem, "proxy.port") {
		t.Errorf("rollback with an incompatible config: %v %v", res, err)
	}
}
