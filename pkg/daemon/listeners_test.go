package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestControlLockHeld: while some process (here: this one) holds the
// control path's lock, a daemon refuses to start, names that process,
// and binds nothing.
func TestControlLockHeld(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, "{}")
	f, err := os.OpenFile(lockPath(cfg.Control.Path), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}})
	want := fmt.Sprintf("another rollbridge daemon with pid %d is starting or running on %s", os.Getpid(), cfg.Control.Path)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error containing %q", err, want)
	}
	if _, err := os.Lstat(cfg.Control.Path); !os.IsNotExist(err) {
		t.Errorf("control socket created although the lock was held: %v", err)
	}
}

// TestControlLockReleasedAtShutdown: the lock is held while the daemon
// runs, released once it stopped, and its file stays.
func TestControlLockReleasedAtShutdown(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, "{}")
	cancel, done := runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}})
	b, err := os.ReadFile(lockPath(cfg.Control.Path))
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Errorf("lock file holds %q (%v), want this process's pid", b, err)
	}
	tryLock := func() error {
		f, err := os.Open(lockPath(cfg.Control.Path))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err := tryLock(); err != syscall.EWOULDBLOCK {
		t.Errorf("flock while the daemon runs: %v, want EWOULDBLOCK", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the cleanup
	if err := tryLock(); err != nil {
		t.Errorf("flock after shutdown: %v", err)
	}
}

// TestControlDirectoryOthersCanWrite: in a directory where other users
// could replace the socket or its lock file, the daemon does not start;
// the sticky bit (as on /tmp) makes the same directory acceptable.
func TestControlDirectoryOthersCanWrite(t *testing.T) {
	dir := shortDir(t)
	sub := filepath.Join(dir, "d")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir, fmt.Sprintf("{control+: {path: %q}}", filepath.Join(sub, "c.sock")))
	if err := os.Chmod(sub, 0o777); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}})
	if err == nil || !strings.Contains(err.Error(), "control socket directory "+sub+" is writable by other users (mode 0777) without the sticky bit") {
		t.Errorf("got %v", err)
	}
	if err := os.Chmod(sub, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}})
}

// TestControlLockFilePlanted: a symlink, or a file of another user, where
// the lock file belongs is refused, and nothing is written through it.
func TestControlLockFilePlanted(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, "{}")
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, lockPath(cfg.Control.Path)); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}})
	if err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("symlink: got %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the symlink's target was written: %q", b)
	}
	if os.Geteuid() != 0 {
		return // only root can give a file to another user
	}
	if err := os.Remove(lockPath(cfg.Control.Path)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lockPath(cfg.Control.Path), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(lockPath(cfg.Control.Path), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), Options{Config: cfg, Stdout: &lockedBuffer{}})
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534, not to this daemon's user") {
		t.Errorf("foreign lock file: got %v", err)
	}
}

// TestControlSocketModeUnsetWithOwner: with an owner but no mode, the
// socket ends up with the mode an ordinary bind gives (0777 less the
// umask), though it was bound with none.
func TestControlSocketModeUnsetWithOwner(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	mask, err := umask()
	if err != nil {
		t.Fatal(err)
	}
	dir := shortDir(t)
	cfg := testConfig(t, dir, fmt.Sprintf("{control+: {owner: %q}}", me.Username))
	runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}})
	st, err := os.Lstat(cfg.Control.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Mode().Perm(), 0o777&^mask; got != want {
		t.Errorf("socket mode %v, want %v (umask %03o)", got, want, mask)
	}
	if c, err := net.Dial("unix", cfg.Control.Path); err != nil {
		t.Errorf("dial: %v", err)
	} else {
		c.Close()
	}
}
