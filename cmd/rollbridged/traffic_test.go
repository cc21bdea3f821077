package main

// Whom traffic goes to (docs/security.md): a local user who binds the next
// release's port first must not get its traffic, and a memory restart of
// the proxied process must not drop a request. Both through the real
// daemon, a real squatter process and real clients.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// The test binary doubles as the squatter and as an app that leaks memory
// on request, chosen by environment variable before TestMain runs.
func init() {
	if addr := os.Getenv("RB_SQUATTER"); addr != "" {
		squat(addr)
		os.Exit(0)
	}
	if os.Getenv("RB_LEAKYAPP") == "1" {
		leakyApp()
		os.Exit(0)
	}
}

// leakyApp serves on $PORT after sleeping RB_APP_BOOT_MS (a slow boot):
// GET /ping answers 200, GET /leak answers and then makes 128 MiB more
// resident, every other path answers the release id. SIGTERM shuts it
// down gracefully.
func leakyApp() {
	ms, _ := strconv.Atoi(os.Getenv("RB_APP_BOOT_MS"))
	time.Sleep(time.Duration(ms) * time.Millisecond) // the slow boot this app plays
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var leaked [][]byte
	release := os.Getenv("ROLLBRIDGE_RELEASE_ID")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ping":
		case "/leak":
			// After the answer, so the request itself is not what a
			// restart cuts off.
			go func() {
				b := bytes.Repeat([]byte{1}, 128<<20) // written, so resident, not just reserved
				mu.Lock()
				leaked = append(leaked, b)
				mu.Unlock()
			}()
		default:
			fmt.Fprintln(w, release)
		}
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background()) // in-flight requests finish first
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		os.Exit(1)
	}
	<-ctx.Done()
}

func squat(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println("listening")
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hijacked")
	}))
}

// startSquatter runs the squatter on addr, as the user nobody when the
// test runs as root (the attacker is another local user), and returns
// once it listens.
func startSquatter(t *testing.T, dir, addr string) *exec.Cmd {
	t.Helper()
	bin := filepath.Join(dir, "squatter")
	copyFile(t, bin, mustExecutable(t), 0o755)
	cmd := exec.Command(bin)
	cmd.Env = []string{"RB_SQUATTER=" + addr}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("squatter: %q %v", line, err)
	}
	return cmd
}

// TestPortSquatterGetsNoTraffic: while the next release's web process
// boots, another local user binds its port (first free in the range, and
// in every process's command line) and answers the health check. The
// deploy must fail naming that process, and traffic must stay with the
// release that serves. Before the fix traffic switched to the squatter.
func TestPortSquatterGetsNoTraffic(t *testing.T) {
	exe := mustExecutable(t)
	from := 30000 + rand.IntN(25)*100
	// The web process waits for the file "go" in its release directory
	// before it starts: until then its port is free, the squatter's window.
	f := newFixture(t, 0, fmt.Sprintf(`{processes: [{id: 'web', policy: 'proxied', port: {from: %d, to: %d}, health: {intervalMs: 20},
	  command: 'while [ ! -e go ]; do sleep 0.01; done; PORT={{port}} RB_TESTAPP=1 exec %s'}]}`, from, from+99, exe))
	if err := os.Chmod(f.dir, 0o755); err != nil { // the squatter runs its copy of this binary from there
		t.Fatal(err)
	}
	f.start(nil, "")
	f.waitReady()
	release := func(id string, open bool) string {
		dir := filepath.Join(f.dir, id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if open {
			if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	release("v1", true)
	f.deploy("v1")
	front := fmt.Sprintf("http://127.0.0.1:%d/", f.status().Proxy.Port)

	done := make(chan error, 1)
	go func() {
		_, err := f.client().Deploy(context.Background(), control.DeployRequest{ReleasePath: release("v2", false), ReleaseID: "v2"}, nil)
		done <- err
	}()
	var port int
	testutil.Eventually(t, "v2's web port", func() bool {
		for _, r := range f.status().Releases {
			if p, ok := r.Ports.Get("web"); ok && r.ReleaseID == "v2" {
				port = p
				return true
			}
		}
		return false
	})
	squatter := startSquatter(t, f.dir, fmt.Sprintf("127.0.0.1:%d", port))
	err := <-done
	user := "nobody"
	if os.Geteuid() != 0 {
		u, err := osuser.Current()
		if err != nil {
			t.Fatal(err)
		}
		user = u.Username
	}
	want := fmt.Sprintf("127.0.0.1:%d is held by pid %d (user %s) running %s", port, squatter.Process.Pid, user, filepath.Join(f.dir, "squatter"))
	var ce *control.Error
	if err == nil || !errors.As(err, &ce) || !strings.Contains(err.Error(), want) {
		t.Fatalf("deploy of v2 with its port squatted: %v; want it refused with %q", err, want)
	}
	if code, body := get(t, front); code != 200 || body != "v1" {
		t.Errorf("serving %d %q, want v1", code, body)
	}
	if ev := f.events(); !strings.Contains(ev, `"foreign listener"`) {
		t.Errorf("no foreign listener event: %s", ev)
	}
	st := f.status()
	if st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" {
		t.Errorf("active release %v, want v1", st.ActiveReleaseID)
	}
}

// TestPortSquatterAfterACrashGetsNoTraffic: the web process of the active
// release crashes, and before it is back another local user binds its
// port and answers like the app. Not one request may reach the squatter:
// traffic pauses while the process is down, and since the port is taken
// the release moves to a new instance on a new port. Before the fix the
// proxy kept sending requests to the port, that is, to the squatter.
func TestPortSquatterAfterACrashGetsNoTraffic(t *testing.T) {
	exe := mustExecutable(t)
	from := 30000 + rand.IntN(25)*100
	f := newFixture(t, 0, fmt.Sprintf(`{processes: [{id: 'web', policy: 'proxied', port: {from: %d, to: %d}, health: {intervalMs: 20},
	  restartDelayMs: 20, command: 'while [ ! -e go ]; do sleep 0.01; done; PORT={{port}} RB_TESTAPP=1 exec %s'}]}`, from, from+99, exe))
	if err := os.Chmod(f.dir, 0o755); err != nil { // the squatter runs its copy of this binary from there
		t.Fatal(err)
	}
	f.start(nil, "")
	f.waitReady()
	gate := filepath.Join(f.dir, "v1", "go")
	if err := os.MkdirAll(filepath.Dir(gate), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.deploy("v1")
	st := f.status()
	front := fmt.Sprintf("http://127.0.0.1:%d/", st.Proxy.Port)
	port, pid := st.Releases[0].Processes[0].Port, st.Releases[0].Processes[0].Pid

	var stolen, served atomic.Int64
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Get(front)
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch strings.TrimSpace(string(b)) {
			case "hijacked":
				stolen.Add(1)
			case "v1":
				served.Add(1)
			}
		}
	}()
	stopLoop := sync.OnceFunc(func() { close(stop); <-loopDone })
	t.Cleanup(stopLoop)

	// The restarted web waits at its gate: its port is free for the taking.
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "web restarted after its crash", func() bool {
		return strings.Contains(f.events(), `"reason":"crash"`)
	})
	startSquatter(t, f.dir, fmt.Sprintf("127.0.0.1:%d", port))
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "web on a new port (or a request stolen)", func() bool {
		p := f.status().Releases[0].Processes[0].Port
		return stolen.Load() > 0 || p != 0 && p != port
	})
	if n := stolen.Load(); n != 0 {
		t.Fatalf("%d requests reached the squatter", n)
	}
	before := served.Load()
	testutil.Eventually(t, "v1 serving again", func() bool { return served.Load() > before })
	stopLoop()
	if n := stolen.Load(); n != 0 {
		t.Errorf("%d requests reached the squatter", n)
	}
	for _, want := range []string{`"traffic paused"`, `"foreign listener"`, `"process replaced"`} {
		if ev := f.events(); !strings.Contains(ev, want) {
			t.Errorf("no %s event: %s", want, ev)
		}
	}
}

// TestMemoryRestartOfTheWebProcessDropsNoRequest: four times, the proxied
// process (an app that boots slowly) is made to go over its memory limit
// while clients send requests in a loop. Every memory restart must replace
// it without a failed request. Before the fix each restart in place
// refused requests for the whole boot.
func TestMemoryRestartOfTheWebProcessDropsNoRequest(t *testing.T) {
	exe := mustExecutable(t)
	from := 30000 + rand.IntN(25)*100
	// The drain timeout only bounds how long a slow /leak may take on a
	// loaded host: every drain here ends when its requests do.
	f := newFixture(t, 0, fmt.Sprintf(`{proxy+: {drainTimeoutMs: 120000},
	  processes: [{id: 'web', policy: 'proxied', port: {from: %d, to: %d}, health: {intervalMs: 20},
	  memory: {limitBytes: %d, checkIntervalMs: 100}, command: 'PORT={{port}} RB_LEAKYAPP=1 RB_APP_BOOT_MS=300 exec %s'}]}`,
		from, from+99, 96<<20, exe))
	f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	front := fmt.Sprintf("http://127.0.0.1:%d/", f.status().Proxy.Port)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(front)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "v1" {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %q", resp.StatusCode, b))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)
	web := func() control.Process {
		st := f.status()
		if len(st.Releases) != 1 || len(st.Releases[0].Processes) != 1 {
			t.Fatalf("releases: %+v", st.Releases)
		}
		return st.Releases[0].Processes[0]
	}
	for n := 1; n <= 4; n++ {
		// The request that makes the app leak is a client's too: it must
		// not fail either (it is tried until it reaches the app).
		testutil.Eventually(t, fmt.Sprintf("leak %d answered", n), func() bool {
			resp, err := http.Get(front + "leak")
			if err == nil {
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("GET /leak: %v %v", resp, err))
				return false
			}
			return true
		})
		testutil.Eventually(t, fmt.Sprintf("memory restart %d of web", n), func() bool { return web().MemoryRestarts >= n })
	}
	stopLoad()
	if n := failed.Load(); n != 0 || ok.Load() == 0 {
		t.Errorf("%d of %d requests failed over four memory restarts (first: %v); want none", n, n+ok.Load(), firstErr.Load())
	}
	if w := web(); w.MemoryRestarts != 4 || w.LastStartReason != "memory" || w.LastMemoryRestartAt.IsZero() {
		t.Errorf("web after four memory restarts: %d restarts, reason %q at %v", w.MemoryRestarts, w.LastStartReason, w.LastMemoryRestartAt)
	}
}
