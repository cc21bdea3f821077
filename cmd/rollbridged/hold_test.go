package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// activated is rollbridged under the real systemd-socket-activate, which
// holds the proxy and control sockets, as rollbridge@APP.socket does, and
// starts the daemon at the first connection. The daemon runs in a loop, so
// when it exits the next one starts on the same sockets: systemd's
// Restart=always.
type activated struct {
	port int    // the proxy's
	stop string // created to end the loop
	cmd  *exec.Cmd
}

// socketActivate starts rollbridged for f under systemd-socket-activate
// with env (NAME=VALUE; systemd-socket-activate passes nothing else on
// but PATH, HOME, USER and TERM) and args after --config.
func socketActivate(t *testing.T, f *fixture, env []string, args ...string) *activated {
	t.Helper()
	bin, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatalf("systemd-socket-activate (package systemd) is needed: %v", err)
	}
	a := &activated{stop: filepath.Join(f.dir, "stop")}
	// LISTEN_PID is the loop's pid; each daemon is started through a shell
	// that sets it to its own, which exec keeps.
	// The pause between two daemons is systemd's default RestartSec=100ms;
	// it also keeps a daemon that cannot start from spinning the loop.
	loop := `stop=$1 bin=$2 cfg=$3; shift 3
while [ ! -e "$stop" ]; do
	sh -c 'LISTEN_PID=$$ exec "$0" "$@"' "$bin" --config "$cfg" "$@"
	sleep 0.1
done`
	// The port is found free and then bound by systemd-socket-activate: if
	// something took it in between, try another.
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		cmdArgs := []string{"-l", fmt.Sprintf("127.0.0.1:%d", a.port), "-l", f.sock, "--fdname=proxy:control"}
		for _, kv := range env {
			cmdArgs = append(cmdArgs, "-E", kv)
		}
		cmdArgs = append(cmdArgs, "sh", "-c", loop, "loop", a.stop, daemonBin, f.cfg)
		a.cmd = exec.Command(bin, append(cmdArgs, args...)...)
		out, err := os.Create(filepath.Join(f.dir, fmt.Sprintf("activate-%d.log", attempt)))
		if err != nil {
			t.Fatal(err)
		}
		a.cmd.Stdout = out
		stderr, err := a.cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := a.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// "Listening on <control path> as 4." comes once both are bound;
		// the daemons' own output follows and goes to the log.
		sc := bufio.NewScanner(stderr)
		bound := false
		for !bound && sc.Scan() {
			fmt.Fprintln(out, sc.Text())
			bound = strings.HasPrefix(sc.Text(), "Listening on "+f.sock)
		}
		if bound {
			go func() {
				_, _ = io.Copy(out, stderr)
				out.Close()
			}()
			break
		}
		_ = a.cmd.Wait()
		out.Close()
		if attempt == 5 {
			t.Fatalf("systemd-socket-activate did not bind its sockets; see %s", out.Name())
		}
		_ = os.Remove(f.sock)
	}
	t.Cleanup(func() { a.end(t) })
	return a
}

// end stops the loop and the daemon running in it, and waits for both.
// The daemon is found as the loop's child, not through status: one that
// is still starting leaves a status request waiting in the backlog.
func (a *activated) end(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(a.stop, nil, 0o644); err != nil {
		t.Error(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	deadline := time.After(testutil.Timeout)
	signalled := map[int]bool{}
	for {
		// A daemon the loop started before it saw the stop file is
		// signalled on a later round.
		for _, pid := range children(a.cmd.Process.Pid) {
			if !signalled[pid] {
				signalled[pid] = true
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
		}
		select {
		case <-done:
			return
		case <-deadline:
			t.Errorf("the daemon under systemd-socket-activate did not stop")
			for _, pid := range children(a.cmd.Process.Pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			_ = a.cmd.Process.Kill()
			<-done
			return
		case <-time.After(20 * time.Millisecond): // poll for the loop's children
		}
	}
}

// children lists pid's child processes.
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		var c int
		if _, err := fmt.Sscan(f, &c); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// serving waits until a daemon answers on the control socket. A status
// request made while systemd-socket-activate holds the socket waits in its
// backlog until a daemon serves it.
func (f *fixture) serving() control.Status {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	st, err := f.client().Status(ctx)
	if err != nil {
		f.t.Fatalf("no daemon answered status: %v", err)
	}
	return st
}

// statusOfNewDaemon waits for a daemon that answers status and is not old, and
// returns its status.
func (f *fixture) statusOfNewDaemon(old int) control.Status {
	f.t.Helper()
	var st control.Status
	testutil.Eventually(f.t, "the next daemon to answer status", func() bool {
		st = f.serving()
		return st.Daemon != nil && st.Daemon.Pid != old
	})
	return st
}

// loadLoop sends GETs to url one after another from each of n clients
// (keep-alive, like a front end) until stopped, and counts the answers:
// a 200 whose body is want (or one of the bodies it lists, separated by
// "|") is one; anything else is a failure.
type loadLoop struct {
	ok       atomic.Int64
	mu       sync.Mutex
	failures []string
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(url, want string, n int) *loadLoop {
	l := &loadLoop{stop: make(chan struct{})}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get(url)
				var failure string
				if err != nil {
					failure = err.Error()
				} else {
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					if got := strings.TrimSpace(string(b)); rerr != nil || resp.StatusCode != http.StatusOK || !slices.Contains(strings.Split(want, "|"), got) {
						failure = fmt.Sprintf("%d %q %v", resp.StatusCode, got, rerr)
					}
				}
				if failure == "" {
					l.ok.Add(1)
					continue
				}
				l.mu.Lock()
				l.failures = append(l.failures, failure)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// end stops the clients and returns the failures.
func (l *loadLoop) end() []string {
	close(l.stop)
	l.wg.Wait()
	return l.failures
}

// TestNoFailedRequestAcrossRestart: the daemon restarts (SIGTERM, then the
// next one starts on the sockets systemd kept, restores the release from
// the state file and boots its web process again) under a steady client
// load. The request in flight at the SIGTERM finishes, and every request
// sent meanwhile is answered by the release: held by the new daemon until
// the restore is done, none refused and none answered 503.
func TestNoFailedRequestAcrossRestart(t *testing.T) { restartUnderLoad(t, nil) }

// restartUnderLoad is TestNoFailedRequestAcrossRestart with env added to
// the daemon's environment; it returns the fixture.
func restartUnderLoad(t *testing.T, env []string) *fixture {
	f := stateFixture(t)
	// The app takes a while to listen, so the restore takes that long too
	// and requests arrive while the next daemon restores.
	a := socketActivate(t, f, append([]string{"RB_APP_BOOT_MS=300"}, env...))
	first := f.serving().Daemon.Pid
	f.deploy("v1")
	base := fmt.Sprintf("http://127.0.0.1:%d", a.port)

	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow?ms=1500")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}()
	testutil.Eventually(t, "the slow request in flight", func() bool {
		return f.status().Releases[0].Connections.HTTP == 1
	})
	load := startLoad(base+"/", "v1", 4)
	testutil.Eventually(t, "requests served before the restart", func() bool { return load.ok.Load() >= 50 })

	if err := syscall.Kill(first, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := <-slow; got != "200 v1" {
		t.Errorf("the request in flight at the SIGTERM: got %q, want 200 v1", got)
	}
	st := f.statusOfNewDaemon(first)
	if st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" {
		t.Fatalf("after the restart: active %v, want v1 restored", st.ActiveReleaseID)
	}
	before := load.ok.Load()
	testutil.Eventually(t, "requests served after the restart", func() bool { return load.ok.Load() >= before+50 })
	failures := load.end()
	t.Logf("%d requests answered 200 across the restart, %d failed", load.ok.Load(), len(failures))
	if len(failures) > 0 {
		t.Errorf("%d requests failed across the restart, first: %q", len(failures), failures[:min(len(failures), 5)])
	}
	return f
}

// TestHoldTimeoutWhileStarting: a release that does not come within
// proxy.holdTimeoutMs (its app listens only after 4 s, so the boot's
// health check is still waiting) gets the held request a 503 with
// Retry-After, not a 503 at once and not an endless wait; status and the
// events say so once the daemon serves.
func TestHoldTimeoutWhileStarting(t *testing.T) {
	f := newFixture(t, 0, `{proxy+: {holdTimeoutMs: 200}}`)
	a := socketActivate(t, f, []string{"RB_APP_BOOT_MS=4000"},
		"--release-path", f.releaseDir("v1"), "--release-id", "v1", "--revision", "r1")
	// The first connection starts the daemon, which holds it while booting.
	for i := range 2 {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", a.port))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || string(b) != "No active release\n" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("request %d while the release boots: got %d %q (Retry-After %q), want 503 %q with Retry-After",
				i, resp.StatusCode, b, resp.Header.Get("Retry-After"), "No active release\n")
		}
	}
	// Status (answered once the boot is over) and the events say so: two
	// given up, none waiting now.
	if st := f.serving(); st.Proxy.HoldGaveUp != 2 || st.Proxy.Held != 0 {
		t.Errorf("status proxy %+v, want holdGaveUp 2, held 0", st.Proxy)
	}
	if ev := f.events(); !strings.Contains(ev, `"message":"requests not held"`) || !strings.Contains(ev, "the hold timeout") {
		t.Errorf("no requests-not-held event naming the timeout in %s", ev)
	}
}

// TestHeldRequestAnsweredWhenTheStartFails: a boot release that fails
// ends the hold with the daemon: the request it held is answered 503 at
// once (no release is on its way from this daemon), not left to time out.
func TestHeldRequestAnsweredWhenTheStartFails(t *testing.T) {
	f := newFixture(t, 0, `{proxy+: {holdTimeoutMs: 600000}}`)
	a := socketActivate(t, f, []string{"RB_APP_EXIT=3"},
		"--release-path", f.releaseDir("v1"), "--release-id", "v1", "--revision", "r1")
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", a.port))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || string(b) != "No active release\n" || resp.Header.Get("Retry-After") != "" {
		t.Errorf("request held while the boot failed: got %d %q (Retry-After %q), want 503 %q",
			resp.StatusCode, b, resp.Header.Get("Retry-After"), "No active release\n")
	}
}
