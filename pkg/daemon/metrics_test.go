package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// scrape returns the metrics exposition as lines.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v\n%s", res.StatusCode, err, body)
	}
	return string(body)
}

// sample returns the value of the series written exactly as series
// (name{labels} with the labels in the exposition's order), or "" if absent.
func sample(exposition, series string) string {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// The metrics listener (passed in, as systemd would) reports what the
// proxy and the commands did: requests per release and status class,
// deploys by outcome, the health-check wait, open connections, release
// info, process restarts; a pruned release's series are gone.
func TestMetricsCountRequestsDeploysAndRestarts(t *testing.T) { metricsCount(t, 0) }

// The same with the event loop (two threads), which serves the plain GETs
// itself and reports them to the metrics (a proxy.ResultObserver).
func TestMetricsCountTheEventLoopsRequests(t *testing.T) { metricsCount(t, 2) }

func metricsCount(t *testing.T, loop int) {
	dir := shortDir(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir, fmt.Sprintf(`{metrics: {port: 0}, releaseRetention: {keep: 1},
	  processes: [{id: 'web', policy: 'proxied', command: '%s=1 PORT={{port}} exec %s', port: {from: 18100, to: 18199}}]}`, testAppEnv, exe))
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}, Listeners: Listeners{Metrics: mln}, EventLoop: loop})
	maddr := mln.Addr().String()
	c := &control.Client{Path: cfg.Control.Path}
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	proxyURL := fmt.Sprintf("http://127.0.0.1:%d", st.Proxy.Port)
	get := func(n int, path string) {
		t.Helper()
		for range n {
			res, err := http.Get(proxyURL + path)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
	deploy := func(id string) {
		t.Helper()
		if _, err := c.Deploy(ctx, control.DeployRequest{ReleasePath: dir, ReleaseID: id}, nil); err != nil {
			t.Fatal(err)
		}
	}

	deploy("v1")
	get(7, "/a")
	deploy("v2")
	get(5, "/b?q=1")
	if _, err := c.Deploy(ctx, control.DeployRequest{ReleasePath: filepath.Join(dir, "missing"), ReleaseID: "bad"}, nil); err == nil {
		t.Fatal("deploy of a missing path succeeded")
	}

	if st, err := c.Status(ctx); err != nil || (st.Proxy.EventLoop != nil) != (loop > 0) || loop > 0 && (st.Proxy.EventLoop.Served != 12 || st.Proxy.EventLoop.Threads != loop) {
		t.Fatalf("status: %v; event loop %+v, want %d threads to have served the 12 GETs", err, st.Proxy.EventLoop, loop)
	}
	m := scrape(t, maddr)
	for series, want := range map[string]string{
		`rollbridge_http_requests_total{code_class="2xx",release="v1"}`:                        "7",
		`rollbridge_http_requests_total{code_class="2xx",release="v2"}`:                        "5",
		`rollbridge_http_requests_total{code_class="5xx",release="v2"}`:                        "0",
		`rollbridge_http_request_duration_seconds_count{code_class="2xx",release="v1"}`:        "7",
		`rollbridge_deploys_total{command="deploy",result="success"}`:                          "2",
		`rollbridge_deploys_total{command="deploy",result="failure"}`:                          "1",
		`rollbridge_deploys_total{command="rollback",result="success"}`:                        "0",
		`rollbridge_deploy_duration_seconds_count{command="deploy",result="success"}`:          "2",
		`rollbridge_release_info{release="v2",revision="v2",state="active"}`:                   "1",
		`rollbridge_open_connections{kind="http",release="v2"}`:                                "0",
		`rollbridge_process_state{group="release",process="web",release="v2",state="running"}`: "1",
		`rollbridge_process_restarts_total{group="release",process="web",release="v2"}`:        "0",
		`rollbridge_held_requests`:       "0",
		`rollbridge_hold_rejected_total`: "0",
	} {
		if got := sample(m, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
	if !strings.Contains(m, `rollbridge_build_info{goversion="go`) {
		t.Error("no rollbridge_build_info")
	}
	// The health-check wait comes from events, written off the command's path.
	testutil.Eventually(t, "two health-check waits observed", func() bool {
		return sample(scrape(t, maddr), `rollbridge_health_check_wait_seconds_count`) == "2"
	})

	// A crash of the proxied process is a restart.
	st, err = c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := st.Releases[len(st.Releases)-1].Processes[0].Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the restart counted", func() bool {
		return sample(scrape(t, maddr), `rollbridge_process_restarts_total{group="release",process="web",release="v2"}`) == "1"
	})

	// v3 makes v1 the second stopped release once v2 stopped, beyond
	// keep: 1: its series go (a scrape prunes what its status no longer
	// lists, so the next one shows it), v2's stay.
	deploy("v3")
	get(3, "/c")
	testutil.Eventually(t, "v1 pruned", func() bool {
		st, err := c.Status(ctx)
		return err == nil && st.Releases[0].ReleaseID == "v2"
	})
	scrape(t, maddr)
	m = scrape(t, maddr)
	if strings.Contains(m, `release="v1"`) {
		t.Errorf("pruned release v1 still has series:\n%s", grepLines(m, `release="v1"`))
	}
	for series, want := range map[string]string{
		`rollbridge_http_requests_total{code_class="2xx",release="v2"}`: "5",
		`rollbridge_http_requests_total{code_class="2xx",release="v3"}`: "3",
	} {
		if got := sample(m, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A metrics socket from systemd that the config does not ask for, or that
// listens elsewhere, stops the start with a clear error.
func TestInheritedMetricsSocketMismatch(t *testing.T) {
	dir := shortDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct{ name, extra, want string }{
		{"no metrics section", "{}", "the config has no metrics section"},
		{"other port", "{metrics: {port: 1}}", "but the config says metrics 127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, dir, tc.extra)
			err := Run(context.Background(), Options{Config: cfg, Stdout: io.Discard, Listeners: Listeners{Metrics: ln}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// With accessLog, each proxied request is one JSON line on stdout beside
// the events; metrics count the entries dropped (none here).
func TestAccessLogLinesOnStdout(t *testing.T) {
	dir := shortDir(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir, fmt.Sprintf(`{metrics: {port: 0}, accessLog: {},
	  processes: [{id: 'web', policy: 'proxied', command: '%s=1 PORT={{port}} exec %s', port: {from: 18200, to: 18299}}]}`, testAppEnv, exe))
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	cancel, done := runDaemon(t, Options{Config: cfg, Stdout: &out, Listeners: Listeners{Metrics: mln}})
	c := &control.Client{Path: cfg.Control.Path}
	ctx := context.Background()
	if _, err := c.Deploy(ctx, control.DeployRequest{ReleasePath: dir, ReleaseID: "v1"}, nil); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/x?secret=1", st.Proxy.Port))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	if got := sample(scrape(t, mln.Addr().String()), "rollbridge_access_log_dropped_total"); got != "0" {
		t.Errorf("rollbridge_access_log_dropped_total = %q, want 0", got)
	}
	cancel() // Run writes what is queued before it returns
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	var lines []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, `"type":"access"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 4 {
		t.Fatalf("%d access lines, want 4:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		for _, want := range []string{`"method":"GET"`, `"path":"/x"`, `"status":200`, `"releaseId":"v1"`, `"client":"127.0.0.1"`} {
			if !strings.Contains(l, want) {
				t.Errorf("access line lacks %s: %s", want, l)
			}
		}
		if strings.Contains(l, "secret") {
			t.Errorf("the query string was logged: %s", l)
		}
	}
}
