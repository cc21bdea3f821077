package main

// The default control socket lives in a directory no other local user can
// write (docs/security.md, "Local users and the paths the tools use").

import (
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
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// defaultPathFixture writes a config that leaves control.path to its
// default, for an application no other test uses, in a directory any
// user may read; it returns the config's path and the application.
func defaultPathFixture(t *testing.T) (cfg, app string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbdef") // not t.TempDir: its parent is private to root
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	app = "rbtest-" + filepath.Base(dir)
	cfg = filepath.Join(dir, "rollbridge.jsonnet")
	src := fmt.Sprintf(`{application: %q, proxy: {port: 0}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`, app)
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, app
}

// TestDefaultControlSocketIsPrivate: with control.path left out, root's
// daemon binds its socket in /run/rollbridge, a directory only root can
// write, which it creates (mode 0755, whatever the umask) when tmpfiles.d
// has not; the original's /tmp/rollbridge-APP.sock, which any local user
// could have bound first, stays untouched.
func TestDefaultControlSocketIsPrivate(t *testing.T) {
	testutil.NeedRoot(t)
	cfg, app := defaultPathFixture(t)
	sock := filepath.Join(config.RuntimeDir, app+".sock")
	_, statErr := os.Stat(config.RuntimeDir)
	created := errors.Is(statErr, os.ErrNotExist)
	t.Cleanup(func() {
		_ = os.Remove(sock + ".lock") // kept by the daemon on purpose
		if created {
			_ = os.Remove(config.RuntimeDir) // only if empty: another daemon may use it by now
		}
	})

	cmd := exec.Command("/bin/sh", "-c", `umask 077; exec "$0" --config "$1"`, daemonBin, cfg)
	out := &lockedOutput{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	client := &control.Client{Path: sock}
	testutil.Eventually(t, "the daemon to answer on "+sock, func() bool {
		select {
		case <-exited:
			t.Fatalf("the daemon exited:\n%s", out.String())
		default:
		}
		st, err := client.Status(context.Background())
		return err == nil && st.Application == app
	})
	fi, err := os.Stat(config.RuntimeDir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		t.Errorf("%s: owner uid %d, mode %v; want root's, writable by root only", config.RuntimeDir, st.Uid, fi.Mode().Perm())
	}
	if created && fi.Mode().Perm() != 0o755 {
		t.Errorf("%s was created with mode %v under umask 077, want 0755 (deploy users must reach the socket)", config.RuntimeDir, fi.Mode().Perm())
	}
	if _, err := os.Lstat("/tmp/rollbridge-" + app + ".sock"); err == nil {
		t.Errorf("the daemon bound the original's /tmp default too")
	}
}

// TestDefaultControlSocketUnprivileged: a user other than root who
// leaves control.path to its default cannot create a socket in
// /run/rollbridge. The daemon must say so, naming control.path, and
// exit, rather than fall back to a shared directory such as /tmp.
func TestDefaultControlSocketUnprivileged(t *testing.T) {
	testutil.NeedRoot(t) // to run the daemon as nobody
	cfg, app := defaultPathFixture(t)
	bin := filepath.Join(filepath.Dir(cfg), "rollbridged")
	copyFile(t, bin, daemonBin, 0o755)
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out := &lockedOutput{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tmpSock := "/tmp/rollbridge-" + app + ".sock"
	var err error
	testutil.Eventually(t, "the daemon to exit", func() bool {
		if _, serr := os.Lstat(tmpSock); serr == nil {
			_ = cmd.Process.Kill()
			<-exited
			_ = os.Remove(tmpSock)
			t.Fatalf("the daemon fell back to %s", tmpSock)
		}
		select {
		case err = <-exited:
			return true
		default:
			return false
		}
	})
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	msg := out.String()
	for _, want := range []string{config.RuntimeDir, "control.path", "set control.path to a socket in a directory"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the daemon said %q; want it to mention %q", msg, want)
		}
	}
}
