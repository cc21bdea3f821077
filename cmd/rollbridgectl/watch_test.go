package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// load sends GETs to url from one keep-alive client until the returned
// stop is called, which waits for it and returns how many succeeded.
func load(t *testing.T, url string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ok := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &http.Client{Transport: &http.Transport{}}
		defer c.CloseIdleConnections()
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
				ok++
			}
		}
	}()
	return func() int { cancel(); wg.Wait(); return ok }
}

// TestStatusWatchPlain: off a terminal, --watch prints plain frames (no
// escape sequence), one per interval, --count of them; the second has a
// request rate for the release under load, and the processes with pids.
func TestStatusWatchPlain(t *testing.T) {
	e := startDaemon(t, `[{id: 'worker', command: 'exec sleep 1000'}]`)
	e.mustDeploy("v1")
	stop := load(t, e.url+"/")
	out, stderr, code := e.ctl("status", "--watch", "--interval", "300ms", "--count", "2")
	if n := stop(); n == 0 {
		t.Fatal("the load got no answer")
	}
	if code != 0 {
		t.Fatalf("status --watch: exit %d: %s", code, stderr)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("plain output has escape sequences:\n%q", out)
	}
	frames := strings.Split(out, "\n\nrollbridge e2e")
	if len(frames) != 2 {
		t.Fatalf("want 2 frames, got %d:\n%s", len(frames), out)
	}
	for _, want := range []string{"RELEASE", "PROCESS", "RECENT EVENTS", "traffic switched"} {
		if !strings.Contains(frames[1], want) {
			t.Errorf("second frame lacks %q:\n%s", want, frames[1])
		}
	}
	pid := 0
	for _, p := range e.status().Releases[0].Processes {
		if p.ID == "web" {
			pid = p.Pid
		}
	}
	if !regexp.MustCompile(`(?m)^web\s+v1\s+proxied\s+running\s+` + strconv.Itoa(pid) + `\s`).MatchString(frames[1]) {
		t.Errorf("no row for web (pid %d) running in v1:\n%s", pid, frames[1])
	}
	// The first frame has nothing to compare with; the second a positive rate.
	if !regexp.MustCompile(`(?m)^v1\s+active\s+v1\s+\d+\s+0\s+-\s`).MatchString(frames[0]) {
		t.Errorf("first frame: want v1 active with rate -:\n%s", frames[0])
	}
	m := regexp.MustCompile(`(?m)^v1\s+active\s+v1\s+\d+\s+0\s+([0-9.]+)\s`).FindStringSubmatch(frames[1])
	if m == nil {
		t.Fatalf("second frame: no rate for v1:\n%s", frames[1])
	}
	if r, _ := strconv.ParseFloat(m[1], 64); r <= 0 {
		t.Errorf("rate %s under load, want > 0", m[1])
	}
}

// TestStatusWatchFlags: the watch flags are refused without --watch and
// out of range, with a usage error.
func TestStatusWatchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"status", "--interval", "1s"},
		{"status", "--count", "3"},
		{"status", "--watch", "--interval", "10ms"},
		{"status", "--watch", "--count", "-1"},
	} {
		if _, stderr, code := runCtl(t, append(args, "--socket", "/nonexistent.sock")...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, stderr, exitUsage)
		}
	}
}

// TestStatusWatchInTerminal runs the view in a real terminal (tmux): it
// draws in place on the alternate screen, follows a deploy, shows a
// daemon that stops answering, and Ctrl-C ends it and gives the screen
// back as it was.
func TestStatusWatchInTerminal(t *testing.T) {
	testutil.NeedTool(t, "tmux")
	e := startDaemon(t, `[]`)
	e.mustDeploy("v1")
	bin := ctlBinary(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "tmux.sock") // a server of this test's own
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	tmux("-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "40", "sh")
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", sock, "kill-server").Run() })
	tmux("send-keys", "echo before-the-view", "Enter")
	pane := func() string { return tmux("capture-pane", "-p") }
	testutil.Eventually(t, "the shell to echo", func() bool { return strings.Contains(pane(), "before-the-view") })

	tmux("send-keys", fmt.Sprintf("%s status --watch --interval 200ms -c %s; echo view-ended-$?", bin, e.cfg), "Enter")
	testutil.Eventually(t, "the view to show v1", func() bool {
		p := pane()
		return strings.Contains(p, "RELEASE") && regexp.MustCompile(`(?m)^v1\s+active`).MatchString(p) &&
			!strings.Contains(p, "before-the-view") // the alternate screen
	})
	e.mustDeploy("v2")
	testutil.Eventually(t, "the view to follow the deploy", func() bool {
		p := pane()
		return regexp.MustCompile(`(?m)^v2\s+active`).MatchString(p) && regexp.MustCompile(`(?m)^v1\s+(draining|stopped)`).MatchString(p) &&
			strings.Contains(p, "traffic switched")
	})
	// One frame drawn over a longer one leaves nothing of it behind: the
	// pane has exactly one header.
	if p := pane(); strings.Count(p, "rollbridge e2e") != 1 {
		t.Errorf("the pane shows %d headers, want 1:\n%s", strings.Count(p, "rollbridge e2e"), p)
	}

	// The daemon goes away: the view says so and keeps going.
	e.cancel()
	testutil.Eventually(t, "the view to show the daemon gone", func() bool { return strings.Contains(pane(), "the daemon does not answer") })

	tmux("send-keys", "C-c", "")
	testutil.Eventually(t, "Ctrl-C to end the view and restore the screen", func() bool {
		p := pane()
		return strings.Contains(p, "view-ended-0") && strings.Contains(p, "before-the-view") && !strings.Contains(p, "RELEASE")
	})
}

// TestStatusWatchShowsTheCanary: the frame names the canary and its split
// under the proxy line, and says nothing of one when none runs.
func TestStatusWatchShowsTheCanary(t *testing.T) {
	v1 := "v1"
	st := control.Status{Application: "shop", ActiveReleaseID: &v1,
		Canary: &control.CanaryInfo{ReleaseID: "v2", Percent: 12.5, Sticky: "cookie", Cookie: "rollbridge_canary"}}
	frame := strings.Join(renderFrame(&sample{at: time.Now(), status: st}, nil, time.Second), "\n")
	if want := "canary release v2 — 12.5% of new clients, sticky by cookie rollbridge_canary"; !strings.Contains(frame, want) {
		t.Errorf("frame lacks %q:\n%s", want, frame)
	}
	st.Canary = nil
	if frame := strings.Join(renderFrame(&sample{at: time.Now(), status: st}, nil, time.Second), "\n"); strings.Contains(frame, "canary") {
		t.Errorf("frame without a canary mentions one:\n%s", frame)
	}
}

func TestStatusWatchShowsTheEventLoop(t *testing.T) {
	st := control.Status{Application: "shop", Proxy: control.ProxyInfo{EventLoop: &control.EventLoopInfo{Threads: 2, Served: 1200, HandedOff: 7}}}
	frame := strings.Join(renderFrame(&sample{at: time.Now(), status: st}, nil, time.Second), "\n")
	if want := "event loop (2 threads) served 1200, handed off 7"; !strings.Contains(frame, want) {
		t.Errorf("frame lacks %q:\n%s", want, frame)
	}
	st.Proxy.EventLoop = nil
	if frame := strings.Join(renderFrame(&sample{at: time.Now(), status: st}, nil, time.Second), "\n"); strings.Contains(frame, "event loop") {
		t.Errorf("frame without the event loop mentions it:\n%s", frame)
	}
}
