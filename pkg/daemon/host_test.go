package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// hostGet fetches path from the daemon's proxy.
func hostGet(t *testing.T, c *control.Client, path string) (int, string) {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", st.Proxy.Port, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// hostConfig is a daemon with a state file, a host health path and a web
// process (this test binary) that answers "ok".
func hostConfig(t *testing.T, dir string) *config.Config {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return testConfig(t, dir, fmt.Sprintf(`{statePath: %q, proxy+: {hostHealthPath: '/_lb'},
	  processes: [{id: 'web', policy: 'proxied', command: '%s=1 PORT={{port}} exec %s', port: 18000, health: false}]}`,
		filepath.Join(dir, "state.json"), testAppEnv, exe))
}

// drain-host turns the health answer 503 while the app keeps serving, and
// a restarted daemon is still drained (the state file) until undrain-host.
func TestDrainHostSurvivesRestart(t *testing.T) {
	dir := shortDir(t)
	cfg := hostConfig(t, dir)
	cancel, done := runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}})
	c := &control.Client{Path: cfg.Control.Path}
	if code, _ := hostGet(t, c, "/_lb"); code != http.StatusServiceUnavailable {
		t.Fatalf("health before any deploy: got %d, want 503", code)
	}
	if _, err := c.Deploy(context.Background(), control.DeployRequest{ReleasePath: dir, ReleaseID: "v1"}, nil); err != nil {
		t.Fatal(err)
	}
	if code, body := hostGet(t, c, "/_lb"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("health with v1 active: got %d %q, want 200", code, body)
	}
	res, err := c.DrainHost(context.Background(), control.DrainHostRequest{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (control.HostResult{Drained: true, Changed: true, HealthPath: "/_lb"}); res != want {
		t.Fatalf("drain-host: got %+v, want %+v", res, want)
	}
	if code, body := hostGet(t, c, "/_lb"); code != http.StatusServiceUnavailable || body != "host drained\n" {
		t.Fatalf("health drained: got %d %q, want 503 host drained", code, body)
	}
	if code, body := hostGet(t, c, "/page"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("a request to the drained host: got %d %q, want the app's 200", code, body)
	}
	// Nothing came for the quiet period: the wait ends (progress or not).
	res, err = c.DrainHost(context.Background(), control.DrainHostRequest{Wait: true, Quiet: 100 * time.Millisecond}, func(control.Progress) {})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || !res.Drained || res.QuietMs < 100 {
		t.Fatalf("drain-host --wait: got %+v, want drained, unchanged, quietMs >= 100", res)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the first runDaemon's cleanup
	runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}})
	if code, body := hostGet(t, c, "/_lb"); code != http.StatusServiceUnavailable || body != "host drained\n" {
		t.Fatalf("health after a restart: got %d %q, want 503 host drained (restored from the state file)", code, body)
	}
	if code, body := hostGet(t, c, "/page"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("a request after the restart: got %d %q, want the restored release's 200", code, body)
	}
	res, err = c.UndrainHost(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (control.HostResult{Changed: true, Healthy: true, HealthPath: "/_lb"}); res != want {
		t.Fatalf("undrain-host: got %+v, want %+v", res, want)
	}
	if code, _ := hostGet(t, c, "/_lb"); code != http.StatusOK {
		t.Fatalf("health undrained: got %d, want 200", code)
	}
	ev, err := c.Events(context.Background(), control.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ev.Events {
		if strings.HasPrefix(e.Message, "host ") {
			names = append(names, e.Message)
		}
	}
	if got := strings.Join(names, ", "); got != "host drained, host drained, host undrained" {
		t.Fatalf("host events: got %q, want the drain, the drain restored at the start, the undrain", got)
	}
}

// A drain that waits fails, leaving the host drained, when requests keep
// coming past its timeout; without a health path drain-host is refused.
func TestDrainHostWaitTimesOutAndNeedsAPath(t *testing.T) {
	dir := shortDir(t)
	cfg := hostConfig(t, dir)
	runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}})
	c := &control.Client{Path: cfg.Control.Path}
	if _, err := c.Deploy(context.Background(), control.DeployRequest{ReleasePath: dir, ReleaseID: "v1"}, nil); err != nil {
		t.Fatal(err)
	}
	// The quiet period is longer than the timeout: it can never be reached.
	_, err := c.DrainHost(context.Background(), control.DrainHostRequest{Wait: true, Quiet: time.Hour, Timeout: 200 * time.Millisecond}, nil)
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Code != control.CodeFailed || !strings.Contains(ce.Message, "requests still arrived") {
		t.Fatalf("got %v, want a failed drain that says requests still arrived", err)
	}
	if code, _ := hostGet(t, c, "/_lb"); code != http.StatusServiceUnavailable {
		t.Fatalf("health after the failed wait: got %d, want 503 (still drained)", code)
	}

	dir2 := shortDir(t)
	cfg2 := testConfig(t, dir2, "{}")
	runDaemon(t, Options{Config: cfg2, Stdout: &lockedBuffer{}})
	_, err = (&control.Client{Path: cfg2.Control.Path}).DrainHost(context.Background(), control.DrainHostRequest{}, nil)
	if !errors.As(err, &ce) || ce.Code != control.CodeBadRequest || !strings.Contains(ce.Message, "proxy.hostHealthPath") {
		t.Fatalf("got %v, want bad_request naming proxy.hostHealthPath", err)
	}
}
