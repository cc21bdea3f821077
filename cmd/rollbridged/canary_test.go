package main

// Canary rollout through the real binaries: rollbridged serving, rollbridgectl
// deploying, setting, promoting and aborting, real HTTP clients counting
// which release answered them.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// ctl runs rollbridgectl against f's daemon (-c is added at the end unless
// args give it: flags must come before a positional argument) and returns
// its stdout, stderr and exit code.
func (f *fixture) ctl(args ...string) (string, string, int) {
	f.t.Helper()
	var stdout, stderr bytes.Buffer
	if !slices.Contains(args, "-c") {
		args = append(args, "-c", f.cfg)
	}
	cmd := exec.Command(ctlBinary(f.t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			f.t.Fatalf("rollbridgectl %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// ctlOK runs rollbridgectl, which must succeed, and decodes its answer.
func (f *fixture) ctlOK(out any, args ...string) {
	f.t.Helper()
	stdout, stderr, code := f.ctl(args...)
	if code != 0 {
		f.t.Fatalf("rollbridgectl %v: exit %d\n%s%s", args, code, stdout, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		f.t.Fatalf("rollbridgectl %v: %v\n%s", args, err, stdout)
	}
}

// side fetches front with c and returns the release that answered and the
// canary cookie the answer set ("" when none).
func side(t *testing.T, c *http.Client, front string) (string, string) {
	t.Helper()
	resp, err := c.Get(front)
	if err != nil {
		t.Fatalf("GET %s: %v", front, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %q", front, resp.StatusCode, b)
	}
	cookie := ""
	for _, ck := range resp.Cookies() {
		if ck.Name == "rollbridge_canary" {
			cookie = ck.Value
		}
	}
	return strings.TrimSpace(string(b)), cookie
}

// trafficLoad is clients hammering the proxy, each keeping its cookies,
// counting every answer that is not a 200 from a release.
type trafficLoad struct {
	ok, failed atomic.Int64
	first      atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startTraffic(t *testing.T, front string, clients int) *trafficLoad {
	l := &trafficLoad{stop: make(chan struct{})}
	for range clients {
		jar, _ := cookiejar.New(nil)
		tr := &http.Transport{}
		c := &http.Client{Transport: tr, Jar: jar}
		l.wg.Go(func() {
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get(front)
				if err != nil {
					l.failed.Add(1)
					l.first.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					l.failed.Add(1)
					l.first.CompareAndSwap(nil, fmt.Sprintf("%d %q", resp.StatusCode, b))
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	t.Cleanup(l.end)
	return l
}

func (l *trafficLoad) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// waitFor waits until n more requests succeeded.
func (l *trafficLoad) waitFor(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	testutil.Eventually(t, fmt.Sprintf("%d answered requests", target), func() bool { return l.ok.Load() >= target })
}

func (l *trafficLoad) check(t *testing.T, what string) {
	t.Helper()
	l.end()
	if n := l.failed.Load(); n != 0 || l.ok.Load() == 0 {
		t.Errorf("%s: %d of %d requests failed (first: %v); want none", what, n, n+l.ok.Load(), l.first.Load())
	}
}

func (f *fixture) state(id string) string {
	for _, r := range f.status().Releases {
		if r.ReleaseID == id {
			return r.State
		}
	}
	return ""
}

func TestCanaryRolloutThroughTheBinaries(t *testing.T) {
	f := newFixture(t, 0, `{processes+: [{id: 'beacon', policy: 'singleton', command: 'exec sleep 1000'}]}`)
	f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	front := fmt.Sprintf("http://127.0.0.1:%d/", f.status().Proxy.Port)

	var started control.CanaryResult
	f.ctlOK(&started, "deploy", "--release-path", f.releaseDir("v2"), "--release-id", "v2", "--canary", "20")
	if started.ActiveReleaseID != "v1" || started.CanaryReleaseID == nil || *started.CanaryReleaseID != "v2" || started.Percent != 20 {
		t.Fatalf("deploy --canary answered %+v", started)
	}
	st := f.status()
	if st.Canary == nil || st.Canary.ReleaseID != "v2" || st.Canary.Percent != 20 || st.Canary.Sticky != "cookie" || st.Canary.Cookie != "rollbridge_canary" {
		t.Errorf("status canary = %+v", st.Canary)
	}
	if f.state("v1") != "active" || f.state("v2") != "canary" {
		t.Errorf("states v1 %q v2 %q, want active and canary", f.state("v1"), f.state("v2"))
	}
	if len(st.Singletons) != 1 || st.Singletons[0].ReleaseID != "v1" {
		t.Errorf("singletons while the canary runs: %+v, want beacon of v1", st.Singletons)
	}

	// A deploy or rollback while the canary runs is refused, clearly.
	if _, stderr, code := f.ctl("deploy", "--release-path", f.releaseDir("v9"), "--release-id", "v9"); code != 1 || !strings.Contains(stderr, "canary") {
		t.Errorf("deploy during a canary: exit %d, %q; want 1 naming the canary", code, stderr)
	}

	// 10,000 fresh clients (no cookie sent): 20 % ± 3 on the canary, each
	// told its side by the cookie.
	fresh := &http.Client{Transport: &http.Transport{}}
	const n = 10000
	onCanary := 0
	for range n {
		got, cookie := side(t, fresh, front)
		if cookie != got {
			t.Fatalf("answer from %s set cookie %q, want its release", got, cookie)
		}
		if got == "v2" {
			onCanary++
		}
	}
	if share := float64(onCanary) / n; share < 0.17 || share > 0.23 {
		t.Errorf("fresh clients on the canary: %.4f, want 0.20 ± 0.03", share)
	}

	// Returning clients (their cookie sent back) keep their side, also
	// once rollout set changed the share.
	type client struct {
		c    *http.Client
		side string
	}
	var clients []client
	for range 100 {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Transport: fresh.Transport, Jar: jar}
		got, _ := side(t, c, front)
		clients = append(clients, client{c, got})
	}
	var set control.CanaryResult
	f.ctlOK(&set, "rollout", "set", "-c", f.cfg, "70")
	if set.Percent != 70 || set.PreviousPercent == nil || *set.PreviousPercent != 20 {
		t.Errorf("rollout set answered %+v", set)
	}
	for i, cl := range clients {
		for range 3 {
			if got, cookie := side(t, cl.c, front); got != cl.side || cookie != "" {
				t.Fatalf("returning client %d: answered by %s (cookie %q), want %s and no new cookie", i, got, cookie, cl.side)
			}
		}
	}

	// Abort under load: no request fails, the canary drains and stops.
	load := startTraffic(t, front, 4)
	load.waitFor(t, 200)
	var aborted control.CanaryResult
	f.ctlOK(&aborted, "rollout", "abort")
	if aborted.ActiveReleaseID != "v1" || aborted.CanaryReleaseID != nil || aborted.PreviousReleaseID == nil || *aborted.PreviousReleaseID != "v2" {
		t.Errorf("rollout abort answered %+v", aborted)
	}
	testutil.Eventually(t, "v2 stopped", func() bool { return f.state("v2") == "stopped" })
	load.waitFor(t, 200)
	load.check(t, "abort")
	if got, _ := side(t, fresh, front); got != "v1" {
		t.Errorf("after abort answered by %s, want v1", got)
	}

	// Promote under load: no request fails, the old release drains and
	// stops, the singleton moves to the promoted release only now.
	f.ctlOK(&started, "deploy", "--release-path", f.releaseDir("v3"), "--release-id", "v3", "--canary", "50")
	if st := f.status(); len(st.Singletons) != 1 || st.Singletons[0].ReleaseID != "v1" {
		t.Errorf("singletons beside canary v3: %+v, want beacon of v1", st.Singletons)
	}
	load = startTraffic(t, front, 4)
	load.waitFor(t, 200)
	var promoted control.CanaryResult
	f.ctlOK(&promoted, "rollout", "promote")
	if promoted.ActiveReleaseID != "v3" || promoted.PreviousReleaseID == nil || *promoted.PreviousReleaseID != "v1" {
		t.Errorf("rollout promote answered %+v", promoted)
	}
	testutil.Eventually(t, "v1 stopped", func() bool { return f.state("v1") == "stopped" })
	load.waitFor(t, 200)
	load.check(t, "promote")
	st = f.status()
	if st.Canary != nil || st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v3" {
		t.Errorf("after promote: canary %+v, active %v; want none and v3", st.Canary, st.ActiveReleaseID)
	}
	if len(st.Singletons) != 1 || st.Singletons[0].ReleaseID != "v3" {
		t.Errorf("singletons after promote: %+v, want beacon of v3", st.Singletons)
	}
	if _, stderr, code := f.ctl("rollout", "abort"); code != 1 || !strings.Contains(stderr, "no canary") {
		t.Errorf("abort with no canary: exit %d, %q", code, stderr)
	}
	evs, err := f.client().Events(context.Background(), control.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range evs.Events {
		seen[e.Message] = true
	}
	for _, name := range []string{"canary started", "canary share changed", "canary aborted", "canary promoted"} {
		if !seen[name] {
			t.Errorf("no %q event", name)
		}
	}
}
