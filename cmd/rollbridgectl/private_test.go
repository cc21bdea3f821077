package main

// Another local user at the paths rollbridgectl uses (docs/security.md,
// "Local users and the paths the tools use"): a control socket served by
// someone else, and files planted where ensure-daemon writes its log and
// pid.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// The test binary doubles as the impostor: run as another user, it
// listens where the control socket should be.
func init() {
	if path := os.Getenv("RB_IMPOSTOR"); path != "" {
		impostor(path)
		os.Exit(0)
	}
}

// impostor listens on path and answers every request line with success,
// as a daemon would that accepted it. On stdout it reports each
// connection ("accepted"), every line it was sent ("line ...") and the
// end of each connection ("closed"), so the test can tell what a client
// sent it.
func impostor(path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(2)
	}
	fmt.Println("listening")
	var mu sync.Mutex
	say := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Println(s)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		say("accepted")
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					say("closed")
					return
				}
				say("line " + strings.TrimSpace(line))
				_, _ = io.WriteString(c, `{"status":"success","application":"impostor","activeReleaseId":"v1","previousReleaseId":null}`+"\n")
			}
		}()
	}
}

// lockedBuffer is an io.Writer that a child's output goroutine and the
// test may use at the same time.
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

// sharedDir makes a directory like /tmp: everyone may add files
// (mode 1777), nobody may rename or remove another's.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbshared") // not t.TempDir: its parent is private to root
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startImpostor runs this test binary as nobody, listening on sock.
func startImpostor(t *testing.T, sock string) *lockedBuffer {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(sock), "impostor")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"RB_IMPOSTOR=" + sock}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	testutil.Eventually(t, "the impostor to listen", func() bool { return strings.Contains(out.String(), "listening") })
	return out
}

// runBin runs a rollbridgectl binary and returns stdout, stderr and the
// exit code.
func runBin(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	}
	t.Fatalf("run %s: %v", bin, err)
	return "", "", 0
}

// TestClientRefusesASocketServedByAnotherUser: another local user binds
// the control path first (here in a shared directory such as /tmp, where
// the original's default put it) and answers "success" to everything.
// root's rollbridgectl must not send it a deploy, nor take its word for
// one; a daemon running as the configured control.owner is trusted.
func TestClientRefusesASocketServedByAnotherUser(t *testing.T) {
	testutil.NeedRoot(t)
	ctl := buildCtl(t)
	dir := sharedDir(t)
	sock := filepath.Join(dir, "rollbridge-shop.sock")
	seen := startImpostor(t, sock)
	release := t.TempDir()
	cfg := writeTemp(t, "rollbridge.jsonnet", fmt.Sprintf(`{application: 'shop', control: {path: %q}, proxy: {},
	  processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`, sock))

	const refusal = "is served by nobody (uid 65534), which is neither root nor you (root (uid 0)); refusing to talk to it"
	for _, args := range [][]string{
		{"deploy", "--socket", sock, "--release-path", release, "--release-id", "v2"},
		{"deploy", "-c", cfg, "--release-path", release},
		{"status", "-c", cfg},
		{"shutdown", "-c", cfg},
	} {
		out, errOut, code := runBin(t, ctl, args...)
		if code != exitFailed || !strings.Contains(errOut, "the control socket "+sock+" "+refusal) || strings.Contains(out, "success") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and the refusal", args, code, out, errOut, exitFailed)
		}
	}
	// Each of the four connected, learnt who listens, and hung up without
	// a word.
	testutil.Eventually(t, "the impostor to see four connections end", func() bool {
		return strings.Count(seen.String(), "closed") == 4
	})
	if strings.Contains(seen.String(), "line ") {
		t.Errorf("the impostor was sent requests:\n%s", seen.String())
	}

	// control.owner says the daemon runs as nobody: then it is trusted.
	owned := writeTemp(t, "rollbridge.jsonnet", fmt.Sprintf(`{application: 'shop', control: {path: %q, owner: 'nobody'}, proxy: {},
	  processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`, sock))
	out, errOut, code := runBin(t, ctl, "status", "-c", owned)
	if code != 0 || !strings.Contains(out, `"application": "impostor"`) {
		t.Errorf("status with control.owner nobody: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestEnsureDaemonRefusesPlantedFiles: where ensure-daemon writes the
// detached daemon's log and pid file, another user has planted a symlink
// to a file of root's, a hard link to one, or a file of their own. root's
// ensure-daemon must write through none of them, and say why.
func TestEnsureDaemonRefusesPlantedFiles(t *testing.T) {
	testutil.NeedRoot(t)
	buildDaemon(t)
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, at, victim string)
		want  string
	}{
		{"symlink", func(t *testing.T, at, victim string) {
			if err := os.Symlink(victim, at); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(at, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}, "is a symbolic link; refusing to write through it"},
		{"hard link", func(t *testing.T, at, victim string) {
			// With fs.protected_hardlinks=0 another user may link a file
			// of root's; root stands in for them here.
			if err := os.Link(victim, at); err != nil {
				t.Fatal(err)
			}
		}, "has 2 names (hard links); refusing to write to it"},
		{"another user's file", func(t *testing.T, at, _ string) {
			if err := os.WriteFile(at, nil, 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(at, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}, "belongs to uid 65534, not to you (uid 0)"},
	} {
		for _, which := range []string{"log", "pid"} {
			t.Run(tc.name+" as the "+which+" file", func(t *testing.T) {
				dir := sharedDir(t)
				sock := filepath.Join(dir, "rollbridge-shop.sock")
				cfg := filepath.Join(dir, "rollbridge.jsonnet")
				if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{application: 'shop', control: {path: %q}, proxy: {port: 0},
				  processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`, sock)), 0o644); err != nil {
					t.Fatal(err)
				}
				victim := filepath.Join(t.TempDir(), "precious")
				if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				// Named as the original named them, in a shared directory.
				logPath, pidPath := filepath.Join(dir, "rollbridge-shop.log"), filepath.Join(dir, "rollbridge-shop.pid")
				at := map[string]string{"log": logPath, "pid": pidPath}[which]
				tc.plant(t, at, victim)

				_, errOut, code := runCtl(t, "ensure-daemon", "-c", cfg, "--daemon-log-path", logPath, "--daemon-pid-path", pidPath)
				if code != exitFailed || !strings.Contains(errOut, at+" "+tc.want) {
					t.Errorf("ensure-daemon: exit %d, stderr %q; want exit %d and %q", code, errOut, exitFailed, at+" "+tc.want)
				}
				if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
					t.Errorf("the victim file now holds %q", b)
				}
				if _, err := os.Lstat(sock); err == nil {
					t.Errorf("a daemon was started (%s exists)", sock)
					_, _, _ = runCtl(t, "shutdown", "-c", cfg)
				}
			})
		}
	}
}

// TestEnsureDaemonFilesBesideTheSocket: with no --daemon-log-path and
// --daemon-pid-path, the detached daemon's log and pid file go beside
// its control socket, in the directory the daemon already requires to be
// private, not in /tmp.
func TestEnsureDaemonFilesBesideTheSocket(t *testing.T) {
	buildDaemon(t)
	dir, err := os.MkdirTemp("", "rbens")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "shop.sock")
	cfg := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{application: 'shop', control: {path: %q}, proxy: {port: 0},
	  processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`, sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCtl(t, "ensure-daemon", "-c", cfg)
	if code != 0 {
		t.Fatalf("ensure-daemon: exit %d: %s", code, errOut)
	}
	defer func() {
		if _, errOut, code := runCtl(t, "shutdown", "-c", cfg); code != 0 {
			t.Errorf("shutdown: exit %d: %s", code, errOut)
		}
	}()
	logPath, pidPath := filepath.Join(dir, "shop.log"), filepath.Join(dir, "shop.pid")
	if !strings.Contains(errOut, fmt.Sprintf("(log %s, pid file %s)", logPath, pidPath)) {
		t.Errorf("ensure-daemon said %q; want the log and pid file beside the socket", errOut)
	}
	for path, mode := range map[string]os.FileMode{logPath: 0o600, pidPath: 0o644} {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if fi.Mode().Perm()&^mode != 0 {
			t.Errorf("%s has mode %v, want at most %v", path, fi.Mode().Perm(), mode)
		}
	}
}
