package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// startBoot runs rollbridged with the fixture's config and args (the boot
// flags), env added to this process's environment, and its output in out.
func (f *fixture) startBoot(env []string, out *bytes.Buffer, args ...string) *exec.Cmd {
	f.t.Helper()
	cmd := exec.Command(daemonBin, append([]string{"--config", f.cfg}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	return cmd
}

// firstStatus waits for the daemon's first status answer.
func (f *fixture) firstStatus() control.Status {
	f.t.Helper()
	var st control.Status
	testutil.Eventually(f.t, "the first status answer", func() bool {
		var err error
		st, err = f.client().Status(context.Background())
		return err == nil
	})
	return st
}

func (f *fixture) releaseDir(id string) string {
	f.t.Helper()
	dir := filepath.Join(f.dir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	return dir
}

// TestBootIntoRelease: with --release-path/--release-id/--revision the
// daemon serves that release before its control socket answers, without a
// deploy command and without a state file.
func TestBootIntoRelease(t *testing.T) {
	f := newFixture(t, 0, "{}")
	var out bytes.Buffer
	f.startBoot(nil, &out, "--release-path", f.releaseDir("v1"), "--release-id", "v1", "--revision", "a1b2c3d")
	st := f.firstStatus()
	if st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" {
		t.Fatalf("first status: active %v (the boot release must be active before the socket answers)", st.ActiveReleaseID)
	}
	if r := st.Releases[0]; r.Revision != "a1b2c3d" || r.ReleasePath != filepath.Join(f.dir, "v1") {
		t.Errorf("release %+v", r)
	}
	if code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", st.Proxy.Port)); code != 200 || body != "v1" {
		t.Errorf("served %d %q", code, body)
	}
	// Later deploys work as usual.
	f.deploy("v2")
	if code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", st.Proxy.Port)); code != 200 || body != "v2" {
		t.Errorf("after a deploy: %d %q", code, body)
	}
}

func TestBootFlagsAreChecked(t *testing.T) {
	f := newFixture(t, 0, "{}")
	rel := f.releaseDir("v1")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no revision", []string{"--release-path", rel, "--release-id", "v1"}, "--release-path, --release-id and --revision must be given together"},
		{"no path", []string{"--release-id", "v1", "--revision", "r"}, "--release-path, --release-id and --revision must be given together"},
		{"relative path", []string{"--release-path", "releases/v1", "--release-id", "v1", "--revision", "r"}, `--release-path "releases/v1" must be an absolute path`},
		{"unclean path", []string{"--release-path", rel + "/../v1", "--release-id", "v1", "--revision", "r"}, fmt.Sprintf("--release-path %q must be clean", rel+"/../v1")},
		{"id with a slash", []string{"--release-path", rel, "--release-id", "../v1", "--revision", "r"}, `--release-id "../v1" must be 1 to 200 letters, digits, dots, underscores or hyphens, starting with a letter or digit`},
		{"id starting with a dot", []string{"--release-path", rel, "--release-id", ".v1", "--revision", "r"}, `--release-id ".v1" must be`},
		{"id too long", []string{"--release-path", rel, "--release-id", strings.Repeat("a", 201), "--revision", "r"}, "--release-id"},
		{"revision with a space", []string{"--release-path", rel, "--release-id", "v1", "--revision", "a b"}, `--revision "a b" must be`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(daemonBin, append([]string{"--config", f.cfg}, tc.args...)...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "rollbridged: "+tc.want) {
				t.Errorf("got %v:\n%s\nwant exit 2 and %q", err, out, tc.want)
			}
		})
	}
	// The longest id there is, and every character the set allows, pass.
	id := "A" + strings.Repeat("z", 195) + "9._-"
	var out bytes.Buffer
	f.startBoot(nil, &out, "--release-path", rel, "--release-id", id, "--revision", "0.1.2_rc-1")
	if st := f.firstStatus(); st.ActiveReleaseID == nil || *st.ActiveReleaseID != id {
		t.Errorf("active %v, want the 200-character id", st.ActiveReleaseID)
	}
	help, err := exec.Command(daemonBin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "--release-path DIR") || !strings.Contains(string(help), "--release-id ID") || !strings.Contains(string(help), "--revision REV") {
		t.Errorf("--help: %v\n%s", err, help)
	}
}

// TestBootStateFileWins: a state file whose active release is restored
// wins over the boot flags; the skip is an event.
func TestBootStateFileWins(t *testing.T) {
	f := stateFixture(t)
	f.reboot("v7", map[string]string{"v7": f.releaseDir("v7")})
	var out bytes.Buffer
	f.startBoot(nil, &out, "--release-path", f.releaseDir("v1"), "--release-id", "v1", "--revision", "r1")
	if st := f.firstStatus(); st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v7" {
		t.Fatalf("active %v, want the restored v7", st.ActiveReleaseID)
	}
	if ev := f.events(); !strings.Contains(ev, `"bootstrap skipped"`) || !strings.Contains(ev, "release v7 was restored from the state file, which wins over --release-id") {
		t.Errorf("events: %s", ev)
	}
}

// TestBootWhenRestoreFails: when the state file's release cannot be
// restored (its directory is gone), the boot release serves, and status
// says what happened to the other.
func TestBootWhenRestoreFails(t *testing.T) {
	f := stateFixture(t)
	f.reboot("v7", map[string]string{"v7": filepath.Join(f.dir, "gone")})
	var out bytes.Buffer
	f.startBoot(nil, &out, "--release-path", f.releaseDir("v1"), "--release-id", "v1", "--revision", "r1")
	st := f.firstStatus()
	if st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" {
		t.Fatalf("active %v, want the boot release v1", st.ActiveReleaseID)
	}
	if p := st.Daemon.RestoreProblem; p == nil || !strings.Contains(*p, "nothing could be restored") || !strings.Contains(*p, "serving release v1 from --release-id instead") {
		t.Errorf("restore problem %v", p)
	}
}

// TestBootFailureExits: a boot release that does not start ends the
// daemon with exit status 1 and a message naming it; the control socket
// never answered and its file is gone.
func TestBootFailureExits(t *testing.T) {
	// maxRestarts 0: a web process that exits is not restarted, so the boot
	// fails at once instead of at the end of the health window.
	f := newFixture(t, 0, "{processes: [super.processes[0] + {restart: {maxRestarts: 0}}]}")
	var out bytes.Buffer
	cmd := f.startBoot([]string{"RB_APP_EXIT=3"}, &out, "--release-path", f.releaseDir("v1"), "--release-id", "v1", "--revision", "r1")
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "rollbridged: boot release v1 from "+filepath.Join(f.dir, "v1")+": ") ||
		!strings.Contains(out.String(), `"message":"bootstrap activation failed"`) {
		t.Errorf("output:\n%s", out.String())
	}
	if _, err := os.Stat(f.sock); !os.IsNotExist(err) {
		t.Errorf("control socket file after the failed boot: %v", err)
	}
}
