package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testapp"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

var daemonBin string

// TestMain builds rollbridged once; the test binary itself doubles as the
// deployed web app (internal/testapp).
func TestMain(m *testing.M) {
	if testapp.Active() {
		testapp.Main()
	}
	dir, err := os.MkdirTemp("", "rbbin")
	if err != nil {
		panic(err)
	}
	daemonBin = filepath.Join(dir, "rollbridged")
	if out, err := exec.Command("go", "build", "-o", daemonBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build rollbridged: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type fixture struct {
	t    *testing.T
	dir  string
	cfg  string
	sock string
}

// newFixture writes a config whose web process is this test binary.
func newFixture(t *testing.T, proxyPort int, extra string) *fixture {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe, _ := os.Executable()
	from := 30000 + rand.IntN(25)*100 // this package's band: 30000-32499 (see pkg/supervisor portRange)
	src := fmt.Sprintf(`{application: 'sd', control: {path: %q, mode: '600'}, proxy: {port: %d, drainTimeoutMs: 5000},
	  processes: [{id: 'web', policy: 'proxied', command: 'PORT={{port}} RB_TESTAPP=1 exec %s', port: {from: %d, to: %d}, health: {intervalMs: 20}}]} + %s`,
		filepath.Join(dir, "c.sock"), proxyPort, exe, from, from+99, extra)
	cfg := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, dir: dir, cfg: cfg, sock: filepath.Join(dir, "c.sock")}
}

// notifySocket listens on a unixgram NOTIFY_SOCKET and returns its path and messages.
func notifySocket(t *testing.T, dir string) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(dir, "n.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1000)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	return path, ch
}

// waitMsg waits for a notification containing want.
func waitMsg(t *testing.T, ch <-chan string, want string) string {
	t.Helper()
	deadline := time.After(testutil.Timeout)
	for {
		select {
		case m := <-ch:
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no notification containing %q within %v", want, testutil.Timeout)
			return ""
		}
	}
}

// mark sends mark to the notify socket at path as a datagram of its own.
// The socket keeps datagrams in the order they were sent, so the test can
// tell what the daemon sent before and after a point of its choosing.
func mark(t *testing.T, path, mark string) {
	t.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(mark)); err != nil {
		t.Fatalf("send %s: %v", mark, err)
	}
}

// msgsUntil returns the notifications that arrive before the one equal to
// mark, consuming mark too.
func msgsUntil(t *testing.T, ch <-chan string, mark string) []string {
	t.Helper()
	var out []string
	deadline := time.After(testutil.Timeout)
	for {
		select {
		case m := <-ch:
			if m == mark {
				return out
			}
			out = append(out, m)
		case <-deadline:
			t.Fatalf("marker %q not received within %v", mark, testutil.Timeout)
			return nil
		}
	}
}

// stopped reports whether every thread of pid is stopped by a signal
// (state T in /proc/PID/task/TID/stat). Until then a thread still running
// may send.
func stopped(t *testing.T, pid int) bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			return false // a thread came or went: look again
		}
		st, err := procfs.ParseStat(pid, b)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != 'T' {
			return false
		}
	}
	return true
}

// start runs rollbridged; fds become fd 3.. with LISTEN_* set the way
// systemd does (LISTEN_PID is the daemon's own pid: exec keeps it).
func (f *fixture) start(env []string, names string, fds ...*os.File) *exec.Cmd {
	f.t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `[ -n "$RB_FDS" ] && export LISTEN_PID=$$ LISTEN_FDS=$RB_FDS; exec "$0" --config "$1"`, daemonBin, f.cfg)
	cmd.Env = append(os.Environ(), env...)
	if len(fds) > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("RB_FDS=%d", len(fds)), "LISTEN_FDNAMES="+names)
		cmd.ExtraFiles = fds
	}
	out, _ := os.Create(filepath.Join(f.dir, fmt.Sprintf("daemon-%d.log", time.Now().UnixNano())))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		out.Close()
	})
	return cmd
}

func (f *fixture) client() *control.Client { return &control.Client{Path: f.sock} }

func (f *fixture) waitReady() {
	f.t.Helper()
	testutil.Eventually(f.t, "the daemon to answer status", func() bool {
		_, err := f.client().Status(context.Background())
		return err == nil
	})
}

func (f *fixture) deploy(id string) {
	f.t.Helper()
	rel := filepath.Join(f.dir, id)
	if err := os.MkdirAll(rel, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.client().Deploy(context.Background(), control.DeployRequest{ReleasePath: rel, ReleaseID: id}, nil); err != nil {
		f.t.Fatalf("deploy %s: %v", id, err)
	}
}

func listenerFile(t *testing.T, ln net.Listener) *os.File {
	t.Helper()
	var f *os.File
	var err error
	switch l := ln.(type) {
	case *net.TCPListener:
		f, err = l.File()
	case *net.UnixListener:
		f, err = l.File()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// heldSockets binds the proxy and control sockets outside the daemon, as
// systemd's socket units do, and returns a fixture using them, the proxy
// port and the two descriptors to pass in.
func heldSockets(t *testing.T) (*fixture, int, *os.File, *os.File) {
	t.Helper()
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxyLn.Close() })
	port := proxyLn.Addr().(*net.TCPAddr).Port
	f := newFixture(t, port, "{}")
	ctlLn, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctlLn.(*net.UnixListener).SetUnlinkOnClose(false)
	t.Cleanup(func() { ctlLn.Close() })
	return f, port, listenerFile(t, proxyLn), listenerFile(t, ctlLn)
}

func TestSocketActivationServesOnInheritedListeners(t *testing.T) {
	f, port, pf, cf := heldSockets(t)
	cmd := f.start(nil, "proxy:control", pf, cf)
	f.waitReady()
	f.deploy("v1")
	if code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); code != 200 || body != "v1" {
		t.Errorf("got %d %q through the inherited proxy socket", code, body)
	}
	// The web process must not inherit LISTEN_* meant for the daemon.
	if _, env := get(t, fmt.Sprintf("http://127.0.0.1:%d/env", port)); strings.Contains(env, "LISTEN_") {
		t.Errorf("LISTEN_* leaked to a managed process:\n%s", env)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	// The daemon did not create the control socket, so it must not remove it.
	if _, err := os.Stat(f.sock); err != nil {
		t.Errorf("inherited control socket was removed: %v", err)
	}
}

func TestSocketActivationMismatch(t *testing.T) {
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer proxyLn.Close()
	f := newFixture(t, 18999, "{}")
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=proxy exec "$0" --config "$1"`, daemonBin, f.cfg)
	cmd.ExtraFiles = []*os.File{listenerFile(t, proxyLn)}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the inherited proxy socket listens on "+proxyLn.Addr().String()+" but the config says proxy 127.0.0.1:18999") {
		t.Errorf("got %v: %s", err, out)
	}
}

// TestNotifyLifecycle: READY after the listeners serve, STATUS after a
// deploy, RELOADING/READY around SIGHUP, refused reloads, STOPPING at the end.
func TestNotifyLifecycle(t *testing.T) {
	f := newFixture(t, 0, "{}")
	nsock, msgs := notifySocket(t, f.dir)
	cmd := f.start([]string{"NOTIFY_SOCKET=" + nsock}, "")
	ready := waitMsg(t, msgs, "READY=1")
	// READY means serving: the control socket answers at once.
	if _, err := f.client().Status(context.Background()); err != nil {
		t.Fatalf("READY sent before the control socket answered: %v", err)
	}
	if !strings.Contains(ready, "STATUS=no active release") {
		t.Errorf("ready message %q", ready)
	}
	f.deploy("v1")
	waitMsg(t, msgs, "STATUS=active v1")

	// A compatible change applies; the listeners stay.
	src, _ := os.ReadFile(f.cfg)
	if err := os.WriteFile(f.cfg, []byte(strings.Replace(string(src), "drainTimeoutMs: 5000", "drainTimeoutMs: 4000", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitMsg(t, msgs, "RELOADING=1")
	waitMsg(t, msgs, "READY=1")
	// A listener change is refused, as is a broken config.
	if err := os.WriteFile(f.cfg, []byte(strings.Replace(string(src), "port: 0,", "port: 18998,", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitMsg(t, msgs, "RELOADING=1")
	waitMsg(t, msgs, "READY=1")
	if err := os.WriteFile(f.cfg, []byte("{ broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitMsg(t, msgs, "RELOADING=1")
	waitMsg(t, msgs, "READY=1")
	evs, err := f.client().Events(context.Background(), control.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs.Events {
		if strings.HasPrefix(e.Message, "config reload") {
			got = append(got, e.Message+": "+fmt.Sprint(e.Data["error"]))
		}
	}
	if len(got) != 3 || got[0] != "config reloaded: <nil>" || !strings.Contains(got[1], "proxy address changed") || !strings.Contains(got[2], "rollbridge.jsonnet:1:") {
		t.Errorf("reload events: %q", got)
	}
	// A deploy re-reads the file: the broken one fails it, and v1 stays.
	rel := filepath.Join(f.dir, "v2")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client().Deploy(context.Background(), control.DeployRequest{ReleasePath: rel, ReleaseID: "v2"}, nil); err == nil ||
		!strings.Contains(err.Error(), "re-read the config for this deploy") || !strings.Contains(err.Error(), "rollbridge.jsonnet:1:") {
		t.Errorf("deploy with a broken config: %v", err)
	}
	// Still serving after the refused reloads, and a good file deploys.
	if err := os.WriteFile(f.cfg, src, 0o644); err != nil {
		t.Fatal(err)
	}
	f.deploy("v2")
	waitMsg(t, msgs, "STATUS=active v2")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitMsg(t, msgs, "STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// TestDeployRereadsTheConfigFile: rollbridged re-reads its config file at
// every deploy, without a SIGHUP (Node rollbridge 0.1.12).
func TestDeployRereadsTheConfigFile(t *testing.T) {
	f := newFixture(t, 0, `{processes: [p + {env: {ROLLBRIDGE_X_MARK: 'one'}} for p in super.processes]}`)
	f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	src, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cfg, []byte(strings.Replace(string(src), "'one'", "'two'", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	f.deploy("v2")
	st, err := f.client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, env := get(t, fmt.Sprintf("http://127.0.0.1:%d/env", st.Proxy.Port)); !strings.Contains(env, "ROLLBRIDGE_RELEASE_ID=v2") || !strings.Contains(env, "ROLLBRIDGE_X_MARK=two") {
		t.Errorf("v2 does not run the edited config:\n%s", env)
	}

	// A config file that no longer loads never blocks a rollback: it runs on
	// the last good config and the answer says so.
	if err := os.WriteFile(f.cfg, []byte("{ half-written"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := f.client().Rollback(context.Background(), control.RollbackRequest{}, nil)
	if err != nil || res.ActiveReleaseID != "v1" || !strings.Contains(res.ConfigProblem, "last good config") {
		t.Errorf("rollback with a broken config file: %+v, %v; want v1 active and the problem named", res, err)
	}
}

// TestWatchdogPings: pings arrive while the daemon runs, none while it is
// stopped, and they resume once it continues. It counts and orders the
// notifications; how far apart they are is the daemon's business.
func TestWatchdogPings(t *testing.T) {
	const watchdog = 400 * time.Millisecond // WATCHDOG_USEC; the daemon pings at half of it
	f := newFixture(t, 0, "{}")
	nsock, msgs := notifySocket(t, f.dir)
	// WATCHDOG_PID must be the daemon: exec in sh keeps the pid.
	cmd := exec.Command("/bin/sh", "-c", `WATCHDOG_PID=$$ exec "$0" --config "$1"`, daemonBin, f.cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+nsock, fmt.Sprintf("WATCHDOG_USEC=%d", watchdog.Microseconds()))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	waitMsg(t, msgs, "READY=1")
	for i := 0; i < 3; i++ {
		waitMsg(t, msgs, "WATCHDOG=1")
	}

	// A stopped daemon (its core cannot answer) sends no pings, and nothing
	// else pings on its behalf. Once all its threads are stopped, whatever
	// it sent before is queued ahead of the first marker.
	_ = cmd.Process.Signal(syscall.SIGSTOP)
	testutil.Eventually(t, "every thread of the daemon stopped", func() bool { return stopped(t, cmd.Process.Pid) })
	mark(t, nsock, "MARK=stopped")
	msgsUntil(t, msgs, "MARK=stopped") // sent before the stop took hold
	// The window is what is tested: two whole watchdog intervals, in which
	// a daemon that was not stopped would ping about four times.
	time.Sleep(2 * watchdog)
	mark(t, nsock, "MARK=continued")
	_ = cmd.Process.Signal(syscall.SIGCONT)
	if during := msgsUntil(t, msgs, "MARK=continued"); len(during) > 0 {
		t.Errorf("notifications while the daemon was stopped: %q", during)
	}
	waitMsg(t, msgs, "WATCHDOG=1")
}

// TestGracefulStopFinishesInFlight: SIGTERM lets a running request finish.
func TestGracefulStopFinishesInFlight(t *testing.T) {
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := proxyLn.Addr().(*net.TCPAddr).Port
	f := newFixture(t, port, "{}")
	cmd := f.start(nil, "proxy", listenerFile(t, proxyLn))
	proxyLn.Close()
	f.waitReady()
	f.deploy("v1")
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/slow?ms=1000", port))
		if err != nil {
			res <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{code: resp.StatusCode, body: strings.TrimSpace(string(b))}
	}()
	testutil.Eventually(t, "the request in flight", func() bool {
		for _, r := range f.status().Releases {
			if r.ReleaseID == "v1" {
				return r.Connections.HTTP == 1
			}
		}
		return false
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	r := <-res
	if r.err != nil || r.code != 200 || r.body != "v1" {
		t.Errorf("in-flight request during stop: %+v (%v)", r, r.err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// TestConnectionsQueueAcrossRestart: with the sockets held outside the
// daemon (as systemd does), a connection made while no daemon runs waits in
// the kernel backlog and is answered by the next daemon — never refused.
func TestConnectionsQueueAcrossRestart(t *testing.T) {
	f, port, pf, cf := heldSockets(t)
	first := f.start(nil, "proxy:control", pf, cf)
	f.waitReady()
	_ = first.Process.Kill() // a crash: nothing shuts down cleanly
	_ = first.Wait()

	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("connection refused while the daemon was down: %v", err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	f.start(nil, "proxy:control", pf, cf)
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("queued connection not answered: %v", err)
	}
	resp.Body.Close()
	// No release yet after the restart: an answer, not a refusal.
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestInvalidConfigMessage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(p, []byte(`{proxy: {}, processes: [{id: 'web', command: 'x'}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(daemonBin, "-c", p).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "invalid config (1 issue;") || !strings.Contains(string(out), "exactly one process must have policy proxied") {
		t.Errorf("got %v: %s", err, out)
	}
	out, err = exec.Command(daemonBin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Usage: rollbridged") {
		t.Errorf("help: %v %s", err, out)
	}
}
