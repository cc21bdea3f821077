package daemon

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(testAppEnv) == "1" {
		serveTestApp() // this binary as a managed process
		return
	}
	goleak.VerifyTestMain(m)
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "rbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testConfig(t *testing.T, dir, extra string) *config.Config {
	t.Helper()
	src := fmt.Sprintf(`{application: 'dtest', control: {path: %q}, proxy: {port: 0, drainTimeoutMs: 1000},
	  processes: [{id: 'web', policy: 'proxied', command: 'true', port: 18000}]} + %s`, filepath.Join(dir, "c.sock"), extra)
	p := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runDaemon starts Run in the background and waits until the socket answers.
func runDaemon(t *testing.T, o Options) (context.CancelFunc, chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	c := &control.Client{Path: o.Config.Control.Path}
	testutil.Eventually(t, "the daemon to answer status", func() bool {
		if _, err := c.Status(context.Background()); err == nil {
			return true
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		return false
	})
	return cancel, done
}

func TestStaleSocketIsRemoved(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, "{}")
	ln, err := net.Listen("unix", cfg.Control.Path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // a socket file with nobody behind it
	var out lockedBuffer
	cancel, done := runDaemon(t, Options{Config: cfg, Stdout: &out})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	if _, err := os.Stat(cfg.Control.Path); !os.IsNotExist(err) {
		t.Errorf("socket left after shutdown: %v", err)
	}
	for _, want := range []string{`"message":"daemon started"`, `"message":"daemon stopping"`, `"message":"daemon stopped"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, out.String())
		}
	}
}

func TestLiveDaemonOnSocket(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, "{}")
	runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}})
	err := Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}})
	if err == nil || !strings.Contains(err.Error(), `a rollbridge daemon for application "dtest" is already running on `+cfg.Control.Path+` (active release: none)`) {
		t.Errorf("got %v", err)
	}
}

func TestOtherProgramOnSocket(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, "{}")
	ln, err := net.Listen("unix", cfg.Control.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // answers nonsense and hangs up
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "HELLO I AM NOT ROLLBRIDGE")
			c.Close()
		}
	}()
	err = Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}})
	if err == nil || !strings.Contains(err.Error(), "is already in use by another process") {
		t.Errorf("got %v", err)
	}
	if _, err := os.Stat(cfg.Control.Path); err != nil {
		t.Errorf("the other program's socket was removed: %v", err)
	}
	ln.Close()
	wg.Wait()
}

func TestNotASocketAndMissingDir(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, "{}")
	if err := os.WriteFile(cfg.Control.Path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}})
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("regular file: %v", err)
	}
	cfg.Control.Path = filepath.Join(dir, "missing", "c.sock")
	err = Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}})
	if err == nil || !strings.Contains(err.Error(), "control socket directory "+filepath.Join(dir, "missing")+" does not exist") {
		t.Errorf("missing dir: %v", err)
	}
}

func TestProxyPortInUse(t *testing.T) {
	dir := shortDir(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	cfg := testConfig(t, dir, fmt.Sprintf("{proxy+: {port: %d}}", port))
	err = Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("proxy address 127.0.0.1:%d is already in use", port)) {
		t.Errorf("got %v", err)
	}
	if _, err := os.Stat(cfg.Control.Path); !os.IsNotExist(err) {
		t.Errorf("control socket created although startup failed: %v", err)
	}
}

func TestInheritedListenerMismatch(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, "{proxy+: {port: 18555}}")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}, Listeners: Listeners{Proxy: ln}})
	if err == nil || !strings.Contains(err.Error(), "the inherited proxy socket listens on "+ln.Addr().String()+" but the config says proxy 127.0.0.1:18555") {
		t.Errorf("got %v", err)
	}
	other, err := net.Listen("unix", filepath.Join(dir, "other.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cfg.Proxy.Port = 0
	err = Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}, Listeners: Listeners{Control: other}})
	if err == nil || !strings.Contains(err.Error(), "the inherited control socket is "+filepath.Join(dir, "other.sock")) {
		t.Errorf("got %v", err)
	}
}

// TestWatchdogLoopPingsOnlyWhenProbePasses records what the loop does, in
// order, and checks that order: a ping follows each passing probe and no
// other step, so a wedged core (a probe that never answers) gets no pings,
// and pings resume once the probe passes again.
func TestWatchdogLoopPingsOnlyWhenProbePasses(t *testing.T) {
	var mu sync.Mutex
	healthy := true
	var trace []string // "pass", "fail" and "ping", as the loop did them
	record := func(step string) {
		mu.Lock()
		defer mu.Unlock()
		trace = append(trace, step)
	}
	// count counts the steps equal to step after the first from steps.
	count := func(from, step string) int {
		mu.Lock()
		defer mu.Unlock()
		n, seen := 0, from == ""
		for _, s := range trace {
			seen = seen || s == from
			if seen && s == step {
				n++
			}
		}
		return n
	}
	setHealthy := func(h bool) {
		mu.Lock()
		defer mu.Unlock()
		healthy = h
		trace = append(trace, fmt.Sprintf("healthy=%v", h))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchdogLoop(ctx, 20*time.Millisecond, func(ctx context.Context) error {
			mu.Lock()
			h := healthy
			mu.Unlock()
			if !h {
				<-ctx.Done() // a wedged core: the probe never answers
				record("fail")
				return ctx.Err()
			}
			record("pass")
			return nil
		}, func() { record("ping") })
	}()
	testutil.Eventually(t, "3 pings while the probe passes", func() bool { return count("", "ping") >= 3 })
	setHealthy(false)
	testutil.Eventually(t, "3 probes failing", func() bool { return count("healthy=false", "fail") >= 3 })
	setHealthy(true)
	testutil.Eventually(t, "a ping after the probe passes again", func() bool { return count("healthy=true", "ping") >= 1 })
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	var steps []string // the loop's own steps, without the test's switches
	for _, s := range trace {
		if !strings.HasPrefix(s, "healthy=") {
			steps = append(steps, s)
		}
	}
	for i, s := range steps {
		switch {
		case s == "ping" && (i == 0 || steps[i-1] != "pass"):
			t.Errorf("step %d pinged without a passing probe before it: %q", i, steps)
			return
		case s == "pass" && i+1 < len(steps) && steps[i+1] != "ping":
			t.Errorf("step %d: a passing probe was not followed by a ping: %q", i, steps)
			return
		}
	}
}

func TestControlSocketOwnerGroupMode(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := shortDir(t)
	cfg := testConfig(t, dir, fmt.Sprintf("{control+: {mode: '640', owner: %q, group: %s}}", me.Username, me.Gid))
	runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}})
	st, err := os.Stat(cfg.Control.Path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o640 || fmt.Sprint(sys.Uid) != me.Uid || fmt.Sprint(sys.Gid) != me.Gid {
		t.Errorf("socket %v uid %d gid %d; want 0640 %s:%s", st.Mode().Perm(), sys.Uid, sys.Gid, me.Uid, me.Gid)
	}
}

func TestControlSocketUnknownOwner(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, "{control+: {owner: 'no-such-user-xyz'}}")
	err := Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}})
	if err == nil || !strings.Contains(err.Error(), `control.owner: unknown user "no-such-user-xyz"`) {
		t.Errorf("got %v", err)
	}
	if _, err := os.Stat(cfg.Control.Path); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestReloadRefusesRestartOnlyChanges(t *testing.T) {
	dir := shortDir(t)
	a := testConfig(t, dir, "{}")
	for name, mod := range map[string]func(c *config.Config){
		"statePath":   func(c *config.Config) { c.StatePath = "/var/lib/x.json" },
		"proxy port":  func(c *config.Config) { c.Proxy.Port = 9999 },
		"socket path": func(c *config.Config) { c.Control.Path = "/tmp/other.sock" },
	} {
		b := *a
		mod(&b)
		if listenerChange(a, &b) == "" {
			t.Errorf("%s change not refused", name)
		}
	}
	b := *a
	b.Proxy.DrainTimeoutMs = 1
	if why := listenerChange(a, &b); why != "" {
		t.Errorf("a timeout change was refused: %s", why)
	}
}

// TestProbeFailsWhileTheMainLoopDoesNotAnswer: the watchdog's probe asks
// the main loop first, so a loop that is stuck stops the pings even when
// the supervisor and the proxy still answer.
func TestProbeFailsWhileTheMainLoopDoesNotAnswer(t *testing.T) {
	d := &daemon{alive: make(chan chan struct{})} // no loop receives: stuck
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := d.probe(ctx, nil); err == nil || !strings.Contains(err.Error(), "main loop did not answer") {
		t.Errorf("got %v, want the main loop named", err)
	}
}
