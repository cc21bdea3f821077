package main

// Traffic control through the real daemon and real clients
// (docs/traffic.md): pause and resume under load, a pause's timeout, the
// bound of the queue, maintenance with its bypass across a restart, and
// the hold before the first deploy.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// trafficFixture is a daemon with statePath and extra proxy settings,
// started and serving release v1; it returns the proxy's base URL.
func trafficFixture(t *testing.T, proxyExtra string) (*fixture, string, *exec.Cmd) {
	t.Helper()
	f := newFixture(t, 0, "{}")
	src, _ := os.ReadFile(f.cfg)
	src = append(src, fmt.Sprintf(" + {statePath: %q, proxy+: %s}", f.statePath(), proxyExtra)...)
	if err := os.WriteFile(f.cfg, src, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	return f, fmt.Sprintf("http://127.0.0.1:%d", f.status().Proxy.Port), cmd
}

// reply is one answer as a client saw it.
type reply struct {
	code   int
	header http.Header
	body   string
	err    error
}

// fetch sends GET url with the given headers (name, value, ...).
func fetch(url string, hdr ...string) reply {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return reply{err: err}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, header: resp.Header, body: strings.TrimSpace(string(b)), err: err}
}

func fetchAsync(url string, hdr ...string) <-chan reply {
	ch := make(chan reply, 1)
	go func() { ch <- fetch(url, hdr...) }()
	return ch
}

// waitHeld waits until status shows n requests held.
func (f *fixture) waitHeld(n int) {
	f.t.Helper()
	testutil.Eventually(f.t, fmt.Sprintf("%d requests held", n), func() bool { return f.status().Proxy.Held == n })
}

// TestPauseUnderLoad: clients keep sending; a pause holds every one of
// them (status counts them), resume lets every one through, and no
// request fails. A pause with drain answers once nothing is in flight.
func TestPauseUnderLoad(t *testing.T) {
	const clients = 8
	f, base, _ := trafficFixture(t, "{}")
	ctx := context.Background()
	load := startLoad(base+"/", "v1", clients)
	testutil.Eventually(t, "load served", func() bool { return load.ok.Load() > 100 })

	res, err := f.client().Pause(ctx, control.PauseRequest{TimeoutMs: 600_000, Drain: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Paused || !res.Drained {
		t.Errorf("pause answered %+v, want paused and drained", res)
	}
	if h := f.status().Releases[0].Connections.HTTP; h != 0 {
		t.Errorf("after a drained pause, %d requests are in flight on v1, want 0", h)
	}
	// Every client now waits with one request.
	f.waitHeld(clients)
	st := f.status()
	if !st.Proxy.Paused || st.Proxy.PausedUntil.IsZero() {
		t.Errorf("status proxy = %+v, want paused with pausedUntil", st.Proxy)
	}
	served := load.ok.Load()
	if _, err := f.client().Resume(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "load served after resume", func() bool { return load.ok.Load() > served+100 })
	if fails := load.end(); len(fails) > 0 {
		t.Errorf("%d requests failed around the pause, first: %s", len(fails), fails[0])
	}
	ev := f.events()
	for _, want := range []string{`"data":{"drain":true,"reason":"pause command"`, `"traffic drained"`,
		`"data":{"held":8,"pausedMs"`} {
		if !strings.Contains(ev, want) {
			t.Errorf("events lack %s:\n%s", want, ev)
		}
	}
	if st := f.status(); st.Proxy.Paused || st.Proxy.Held != 0 {
		t.Errorf("after resume: status proxy = %+v", st.Proxy)
	}
}

// TestPauseTimeoutReleases: nobody resumes; the pause's own timeout
// sends its requests to the release.
func TestPauseTimeoutReleases(t *testing.T) {
	f, base, _ := trafficFixture(t, "{}")
	if _, err := f.client().Pause(context.Background(), control.PauseRequest{TimeoutMs: 300}); err != nil {
		t.Fatal(err)
	}
	if r := fetch(base + "/"); r.err != nil || r.code != http.StatusOK || r.body != "v1" {
		t.Errorf("request during a pause that timed out: got %+v, want 200 v1", r)
	}
	testutil.Eventually(t, "the pause to end", func() bool { return !f.status().Proxy.Paused })
	if ev := f.events(); !strings.Contains(ev, `"reason":"pause timeout"`) {
		t.Errorf("no traffic resumed event for the timeout:\n%s", ev)
	}
}

// TestPauseBounds: past proxy.maxHeld waiting requests the next one gets
// 503 with Retry-After at once; the waiting ones are served at resume. A
// timeout beyond proxy.maxPauseTimeoutMs is refused.
func TestPauseBounds(t *testing.T) {
	f, base, _ := trafficFixture(t, "{maxHeld: 2, maxPauseTimeoutMs: 60000}")
	ctx := context.Background()
	_, err := f.client().Pause(ctx, control.PauseRequest{TimeoutMs: 60_001})
	if e, ok := errors.AsType[*control.Error](err); !ok || e.Code != control.CodeBadRequest || !strings.Contains(e.Message, "maxPauseTimeoutMs") {
		t.Errorf("pause over the maximum: got %v, want bad_request naming proxy.maxPauseTimeoutMs", err)
	}
	if _, err := f.client().Pause(ctx, control.PauseRequest{}); err != nil { // the default timeout
		t.Fatal(err)
	}
	a, b := fetchAsync(base+"/"), fetchAsync(base+"/")
	f.waitHeld(2)
	if r := fetch(base + "/"); r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("third request: got %d Retry-After %q, want 503 with Retry-After", r.code, r.header.Get("Retry-After"))
	}
	if st := f.status(); st.Proxy.HoldGaveUp != 1 {
		t.Errorf("holdGaveUp = %d, want 1", st.Proxy.HoldGaveUp)
	}
	if _, err := f.client().Resume(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan reply{a, b} {
		if r := <-ch; r.code != http.StatusOK || r.body != "v1" {
			t.Errorf("held request: got %+v, want 200 v1", r)
		}
	}
}

// TestMaintenanceModeAcrossRestart: every request gets 503 with
// Retry-After and the page its Accept asks for; the bypass header and
// client address let the team through; maintenance survives a daemon
// restart and ends with off.
func TestMaintenanceModeAcrossRestart(t *testing.T) {
	const token = "0123456789abcdef-team"
	f, base, daemon := trafficFixture(t, fmt.Sprintf("{maintenance: {bypassHeader: 'X-Team', bypassToken: %q, retryAfterMs: 120000}}", token))
	ctx := context.Background()
	if _, err := f.client().Maintenance(ctx, control.MaintenanceRequest{On: true, Message: "Back at <3>"}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		r := fetch(base+"/", "Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
		if r.code != 503 || r.header.Get("Retry-After") != "120" || !strings.Contains(r.body, "Back at &lt;3&gt;") ||
			!strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			t.Errorf("%s, browser: got %d Retry-After %q %q %q", when, r.code, r.header.Get("Retry-After"), r.header.Get("Content-Type"), r.body)
		}
		r = fetch(base+"/api", "Accept", "application/json")
		var j struct {
			Error, Message string
			RetryAfter     int
		}
		if err := json.Unmarshal([]byte(r.body), &j); err != nil || r.code != 503 || j.Error != "maintenance" || j.Message != "Back at <3>" || j.RetryAfter != 120 {
			t.Errorf("%s, JSON client: got %d %q (%v)", when, r.code, r.body, err)
		}
		if r := fetch(base+"/", "X-Team", token); r.code != 200 || r.body != "v1" {
			t.Errorf("%s, bypass header: got %d %q, want 200 v1", when, r.code, r.body)
		}
		if r := fetch(base+"/", "X-Team", "guess"); r.code != 503 {
			t.Errorf("%s, wrong token: got %d, want 503", when, r.code)
		}
		if m := f.status().Proxy.Maintenance; m == nil || m.Message != "Back at <3>" {
			t.Errorf("%s: status maintenance = %+v", when, m)
		}
	}
	check("on")

	// A restart: SIGTERM, then a new daemon on the same config and state.
	if err := daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = daemon.Wait() // its exit status is not the point: the next daemon's state is
	f.start(nil, "")
	f.waitReady()
	base = fmt.Sprintf("http://127.0.0.1:%d", f.status().Proxy.Port)
	check("after a restart")

	page := "<!DOCTYPE html><h1>Our own page</h1>"
	if _, err := f.client().Maintenance(ctx, control.MaintenanceRequest{On: true, Page: page}); err != nil {
		t.Fatal(err)
	}
	if r := fetch(base + "/"); r.code != 503 || r.body != page {
		t.Errorf("own page: got %d %q", r.code, r.body)
	}
	if _, err := f.client().Maintenance(ctx, control.MaintenanceRequest{}); err != nil {
		t.Fatal(err)
	}
	if r := fetch(base + "/"); r.code != 200 || r.body != "v1" {
		t.Errorf("after maintenance off: got %d %q, want 200 v1", r.code, r.body)
	}
	ev := f.events()
	for _, want := range []string{`"maintenance on"`, `"restored":true`, `"maintenance off"`} {
		if !strings.Contains(ev, want) {
			t.Errorf("events lack %s", want)
		}
	}
}

// TestHoldBeforeFirstDeploy: with proxy.holdBeforeFirstDeploy a request
// to a fresh daemon waits for the first deploy instead of a 503; once a
// release served, no release means 503 at once again.
func TestHoldBeforeFirstDeploy(t *testing.T) {
	f := newFixture(t, 0, "{proxy+: {holdBeforeFirstDeploy: true}}")
	f.start(nil, "")
	f.waitReady()
	base := fmt.Sprintf("http://127.0.0.1:%d", f.status().Proxy.Port)
	waiting := fetchAsync(base + "/")
	f.waitHeld(1)
	f.deploy("v1")
	if r := <-waiting; r.code != http.StatusOK || r.body != "v1" {
		t.Errorf("request held before the first deploy: got %+v, want 200 v1", r)
	}
	if _, err := f.client().Stop(context.Background(), control.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	if r := fetch(base + "/"); r.code != http.StatusServiceUnavailable || r.body != "No active release" {
		t.Errorf("after stop: got %d %q, want 503 No active release at once", r.code, r.body)
	}
}
