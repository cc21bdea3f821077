package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

func syscallKill0(pid int) error { return syscall.Kill(pid, 0) }

func listenUnix(t *testing.T, path string) net.Listener {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// hangUpOn listens on a Unix socket at path and closes every connection
// at once without a word: a program that is not a rollbridge daemon.
func hangUpOn(t *testing.T, path string) net.Listener {
	t.Helper()
	ln := listenUnix(t, path)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by the test
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

// nobody is the unprivileged user tests run rollbridgectl as when they
// stage something it may not touch (a process or file of root's).
const nobody = 65534

// buildCtl builds this rollbridgectl into a directory any user may read.
func buildCtl(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbctl") // not t.TempDir: its parent is private to root
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "rollbridgectl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// runAsNobody runs the rollbridgectl binary as the user nobody (the test
// must run as root) and returns stdout, stderr and the exit code.
func runAsNobody(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd.Dir = "/"
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
	t.Fatalf("run %s as nobody: %v", bin, err)
	return "", "", 0
}

// giveToNobody hands a file to nobody and opens its directory (and the
// directories above it that tests create) to everyone, so nobody can
// read and replace it.
func giveToNobody(t *testing.T, path string) {
	t.Helper()
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o777); err != nil {
		t.Fatal(err)
	}
}
