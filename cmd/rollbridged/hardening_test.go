package main

// Attacks and faults at the daemon's trust boundaries, each reproduced
// through the real binary (docs/security.md): a pooled upstream connection
// poisoned by an app that answers twice, a control socket reachable before
// its mode applies, a state-save failure storm, and two daemons started on
// one control path at the same instant.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// The test binary doubles as two more helpers, chosen by environment
// variable before TestMain runs: the app that answers twice, and the
// unprivileged user who races the daemon for its control socket.
func init() {
	if os.Getenv("RB_TWICEAPP") == "1" {
		twiceApp()
		os.Exit(0)
	}
	if path := os.Getenv("RB_SOCKET_RACER"); path != "" {
		socketRacer(path)
		os.Exit(0)
	}
}

// twiceApp is a hand-written HTTP/1.1 app on $PORT. GET /split answers
// normally and remembers its connection; GET /inject then writes a second,
// unasked-for response on that remembered connection (what an app that
// reflects CR LF into a header, or writes after its handler returned,
// does) and answers with that connection's peer address. Every other path
// is answered with the path itself.
func twiceApp() {
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var victim net.Conn
	answer := func(c net.Conn, body string) error {
		_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				switch req.URL.Path {
				case "/split":
					mu.Lock()
					victim = c
					mu.Unlock()
					err = answer(c, "split")
				case "/inject":
					mu.Lock()
					v := victim
					mu.Unlock()
					if v == nil {
						err = answer(c, "")
						break
					}
					if err := answer(v, "stolen"); err != nil {
						return
					}
					err = answer(c, v.RemoteAddr().String())
				default:
					err = answer(c, req.URL.Path)
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// socketRacer connects to path as fast as it can, and exits with a line
// on stdout as soon as one connect succeeds.
func socketRacer(path string) {
	addr := &syscall.SockaddrUnix{Name: path}
	for {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Println("socket:", err)
			os.Exit(2)
		}
		err = syscall.Connect(fd, addr)
		_ = syscall.Close(fd) // a probe
		if err == nil {
			fmt.Println("connected")
			return
		}
	}
}

// tcpQueue returns how many bytes wait unread in the receive queue of the
// local TCP socket local ("127.0.0.1:port") connected to remote, and its
// state (tcpEstablished, ...), from /proc/net/tcp; -1 and "" if there is
// no such socket.
func tcpQueue(t *testing.T, local, remote string) (rx int, state string) {
	t.Helper()
	hex := func(hostport string) string {
		ap, err := net.ResolveTCPAddr("tcp4", hostport)
		if err != nil {
			t.Fatal(err)
		}
		ip := ap.IP.To4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port)
	}
	l, r := hex(local), hex(remote)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != l || f[2] != r {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":") // tx_queue:rx_queue
		n, err := strconv.ParseInt(rx, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		return int(n), f[3]
	}
	return -1, ""
}

// tcpEstablished is ESTABLISHED in /proc/net/tcp's st column.
const tcpEstablished = "01"

// TestPooledConnectionWithUnsolicitedBytesIsDiscarded: an app writes a
// second response nobody asked for on a keep-alive connection that has
// gone back to the daemon's pool. The next client whose request is routed
// to that connection must get its own answer, not the planted one. On the
// net/http path the pool finds the bytes when it next takes the
// connection; the event loop reads them as they come. Either way the
// connection is discarded and an event says so.
func TestPooledConnectionWithUnsolicitedBytesIsDiscarded(t *testing.T) {
	for _, loop := range []string{"off", "on"} {
		t.Run("ROLLBRIDGE_EVENT_LOOP="+loop, func(t *testing.T) { pooledUnsolicited(t, loop == "on") })
	}
}

func pooledUnsolicited(t *testing.T, loop bool) {
	exe, _ := os.Executable()
	from := 30000 + rand.IntN(25)*100
	f := newFixture(t, 0, fmt.Sprintf(`{processes: [{id: 'web', policy: 'proxied', command: 'PORT={{port}} RB_TWICEAPP=1 exec %s',
	  port: {from: %d, to: %d}, health: {path: '/ping', intervalMs: 20}}]}`, exe, from, from+99))
	env := "ROLLBRIDGE_EVENT_LOOP=off"
	if loop {
		env = "ROLLBRIDGE_EVENT_LOOP=on"
	}
	f.start([]string{env}, "")
	f.waitReady()
	f.deploy("v1")
	st := f.status()
	front := fmt.Sprintf("http://127.0.0.1:%d", st.Proxy.Port)
	app := fmt.Sprintf("127.0.0.1:%d", st.Releases[0].Processes[0].Port)
	// Each client has its own connections to the daemon: only the daemon's
	// pool joins them.
	client := func() *http.Client {
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	for round := range 5 {
		if code, body := getWith(t, client(), front+"/split"); code != 200 || body != "split" {
			t.Fatalf("round %d: /split: %d %q", round, code, body)
		}
		_, pooled := getWith(t, client(), "http://"+app+"/inject")
		if loop {
			// The loop reads the planted answer as it arrives, and
			// closes the connection at once.
			testutil.Eventually(t, "the loop closing the pooled connection", func() bool {
				_, state := tcpQueue(t, pooled, app)
				return state != tcpEstablished
			})
		} else {
			// The planted answer has reached the daemon's side of the
			// pooled connection, behind every byte the daemon has read
			// from it.
			testutil.Eventually(t, "the planted response in the daemon's receive queue", func() bool {
				rx, _ := tcpQueue(t, pooled, app)
				return rx > 0
			})
		}
		want := fmt.Sprintf("/victim-%d", round)
		if code, body := getWith(t, client(), front+want); code != 200 || body != want {
			t.Fatalf("round %d: another client got %d %q, want 200 %q: the app's unsolicited response reached it", round, code, body, want)
		}
	}
	if ev := f.events(); !strings.Contains(ev, "bytes that answer no request") {
		t.Errorf("no proxy error event tells of the discarded connection: %s", ev)
	}
}

func getWith(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// TestControlSocketNeverWiderThanConfigured races an unprivileged user's
// connects against many starts of a root daemon whose socket is
// configured mode '600', with umask 000 (as on CI runners, and inherited
// through ensure-daemon): not one connect may succeed.
func TestControlSocketNeverWiderThanConfigured(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon must own a socket another user is kept out of")
	}
	const nobody = 65534
	f := newFixture(t, 0, "{}") // control.mode '600'
	// The racer must be able to reach the socket's directory and run its
	// own copy of this binary.
	if err := os.Chmod(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	racerBin := filepath.Join(f.dir, "racer")
	copyFile(t, racerBin, mustExecutable(t), 0o755)
	racer := exec.Command(racerBin)
	racer.Dir = f.dir
	racer.Env = []string{"RB_SOCKET_RACER=" + f.sock}
	racer.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out := &lockedOutput{}
	racer.Stdout, racer.Stderr = out, out
	if err := racer.Start(); err != nil {
		t.Fatal(err)
	}
	racerDone := make(chan error, 1)
	go func() { racerDone <- racer.Wait() }()
	t.Cleanup(func() {
		_ = racer.Process.Kill()
		<-racerDone
	})

	for round := range 40 {
		if mode := socketModeUnderUmask000(t, f); mode != 0o600 {
			t.Fatalf("round %d: socket mode %v, want 0600", round, mode)
		}
		select {
		case err := <-racerDone:
			racerDone <- err // for the cleanup
			t.Fatalf("round %d: uid %d got through to the mode-600 root socket (racer: %v, %q)", round, nobody, err, out.String())
		default:
		}
	}
}

// socketModeUnderUmask000 starts the daemon with umask 000, waits until it
// answers, and stops it again; it returns the mode its socket had.
func socketModeUnderUmask000(t *testing.T, f *fixture) os.FileMode {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `umask 000; exec "$0" --config "$1"`, daemonBin, f.cfg)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { // on a failure too: no daemon outlives the test
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	f.waitReady()
	fi, err := os.Lstat(f.sock)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func mustExecutable(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func copyFile(t *testing.T, dst, src string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

type lockedOutput struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedOutput) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStateSaveFailureReportedOnce: the state file's name is taken by a
// directory, so every save fails at its last step, the rename. That is
// reported once, however many events (each a reason to save) follow,
// and the daemon recovers by itself once the cause is gone.
func TestStateSaveFailureReportedOnce(t *testing.T) {
	f := stateFixture(t)
	if err := os.MkdirAll(filepath.Join(f.statePath(), "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	testutil.Eventually(t, "a state save failed event", func() bool { return strings.Contains(f.events(), "state save failed") })
	f.deploy("v2") // a burst of events, each marking the state dirty
	all := func() []control.Event {
		ev, err := f.client().Events(context.Background(), control.EventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return ev.Events
	}
	var failures []string
	for _, e := range all() {
		if e.Message == "state save failed" {
			failures = append(failures, fmt.Sprint(e.Data["error"]))
		}
	}
	if len(failures) != 1 {
		t.Fatalf("%d state save failed events, want 1 for one cause; the first ones: %q", len(failures), failures[:min(3, len(failures))])
	}
	if msg := failures[0]; strings.Contains(msg, ".tmp-") || !strings.Contains(msg, "rename") {
		t.Errorf("failure message %q: it should name the step (rename), not the temporary file", msg)
	}
	if tmps, _ := filepath.Glob(filepath.Join(f.dir, ".state.json.tmp-*")); len(tmps) > 0 {
		t.Errorf("temporary files left behind: %q", tmps)
	}
	if err := os.RemoveAll(f.statePath()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the state saved again", func() bool {
		s, err := state.Load(f.statePath())
		return err == nil && s.ActiveReleaseID == "v2" && strings.Contains(f.events(), "state saved again")
	})
}

// TestTwoDaemonsOnePath starts two daemons on one control path at the same
// instant, many times: exactly one serves, and the other exits at once
// with an error naming the pid of the one that serves.
func TestTwoDaemonsOnePath(t *testing.T) {
	f := newFixture(t, 0, "{}")
	for round := range 20 {
		raceTwoDaemons(t, f, round)
	}
}

// daemonRun is one rollbridged that its own goroutine starts once a gate
// opens, and waits for.
type daemonRun struct {
	cmd      *exec.Cmd
	out      lockedOutput  // stderr
	started  chan struct{} // closed once Start returned, with startErr
	startErr error
	done     chan struct{} // closed once the process was waited for, with err
	err      error
}

func startAtGate(gate <-chan struct{}, cfg string) *daemonRun {
	r := &daemonRun{cmd: exec.Command(daemonBin, "--config", cfg), started: make(chan struct{}), done: make(chan struct{})}
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, &r.out
	go func() {
		defer close(r.done)
		<-gate
		r.startErr = r.cmd.Start()
		close(r.started)
		if r.startErr != nil {
			r.err = r.startErr
			return
		}
		r.err = r.cmd.Wait()
	}()
	return r
}

func raceTwoDaemons(t *testing.T, f *fixture, round int) {
	t.Helper()
	gate := make(chan struct{})
	runs := [2]*daemonRun{startAtGate(gate, f.cfg), startAtGate(gate, f.cfg)}
	close(gate)
	defer func() { // on a failure too: no daemon outlives its round
		for _, r := range runs {
			<-r.started
			if r.startErr == nil {
				select {
				case <-r.done:
				default:
					_ = r.cmd.Process.Kill()
				}
			}
			<-r.done
		}
	}()
	for _, r := range runs {
		if <-r.started; r.startErr != nil {
			t.Fatalf("round %d: start: %v", round, r.startErr)
		}
	}
	f.waitReady()
	winner := f.status().Daemon.Pid
	var lost, serving *daemonRun
	select {
	case <-runs[0].done:
		lost, serving = runs[0], runs[1]
	case <-runs[1].done:
		lost, serving = runs[1], runs[0]
	case <-time.After(testutil.Timeout):
		t.Fatalf("round %d: both daemons still run %v after they started on one control path", round, testutil.Timeout)
	}
	var ee *exec.ExitError
	out := lost.out.String()
	switch {
	case lost.cmd.Process.Pid == winner:
		t.Fatalf("round %d: the daemon answering status (pid %d) exited: %v %s", round, winner, lost.err, out)
	case !errors.As(lost.err, &ee) || ee.ExitCode() != 1:
		t.Fatalf("round %d: the second daemon exited with %v, want exit status 1", round, lost.err)
	case !strings.Contains(out, fmt.Sprintf("pid %d", winner)):
		t.Fatalf("round %d: the second daemon's error does not name the running one (pid %d): %s", round, winner, out)
	}
	if round == 0 {
		t.Logf("the second daemon said: %s", out)
	}
	_ = serving.cmd.Process.Signal(syscall.SIGTERM)
	<-serving.done
	if serving.err != nil {
		t.Errorf("round %d: the serving daemon, stopped: %v", round, serving.err)
	}
}
