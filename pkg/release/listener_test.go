package release

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play a process that listens on a port
// (RB_LISTEN=host:port): the holder of a listener that is not ours.
func TestMain(m *testing.M) {
	if addr := os.Getenv("RB_LISTEN"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		_, _ = os.Stdin.Read(make([]byte, 1)) // until the test closes stdin
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// squatter runs the test binary listening on addr in a process of its
// own, as the user nobody when the test runs as root, and returns it and
// its port.
func squatter(t *testing.T, addr string) (*exec.Cmd, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// nobody may not read the build directory: run a copy from a
		// directory everyone may enter.
		dir, err := os.MkdirTemp("", "rbl") // t.TempDir's parent is private
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		exe = filepath.Join(dir, "release.test")
		if err := os.WriteFile(exe, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "RB_LISTEN="+addr)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("squatter: %q %v", line, err)
	}
	return cmd, port
}

func TestCheckListenerOwnership(t *testing.T) {
	ctx := context.Background()
	self := []int{os.Getpid()}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if err := CheckListener(ctx, "127.0.0.1", port, self); err != nil {
		t.Errorf("our own listener: %v", err)
	}
	if err := CheckListener(ctx, "localhost", port, self); err != nil {
		t.Errorf("our own listener by name: %v", err)
	}
	// A listener nobody of the release holds is named.
	err = CheckListener(ctx, "127.0.0.1", port, nil)
	var le *ListenerError
	if !errors.As(err, &le) || len(le.Foreign) != 1 || len(le.Foreign[0].Holders) != 1 || le.Foreign[0].Holders[0].Pid != os.Getpid() {
		t.Fatalf("listener of no release process: %v (%+v)", err, le)
	}
	if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(msg, "127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("message %q names neither the holder nor the address", msg)
	}

	free, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	if err := CheckListener(ctx, "127.0.0.1", freePort, self); !errors.Is(err, ErrNotListening) {
		t.Errorf("a port nothing listens on: %v, want ErrNotListening", err)
	}
}

// TestCheckListenerNamesAnotherProcess: a listener held by another
// process (of another user, when the test runs as root) fails the check
// with its pid, its user and its command line, also when it is bound to
// the wildcard address rather than the upstream address itself.
func TestCheckListenerNamesAnotherProcess(t *testing.T) {
	for _, bind := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		t.Run(bind, func(t *testing.T) {
			cmd, port := squatter(t, bind)
			err := CheckListener(context.Background(), "127.0.0.1", port, []int{os.Getpid()})
			var le *ListenerError
			if !errors.As(err, &le) || len(le.Foreign) != 1 {
				t.Fatalf("got %v, want a ListenerError", err)
			}
			want := Holder{Pid: cmd.Process.Pid, User: userName(os.Geteuid())}
			if os.Geteuid() == 0 {
				want.User = userName(65534)
			}
			h := le.Foreign[0].Holders
			if len(h) != 1 || h[0].Pid != want.Pid || h[0].User != want.User || !strings.Contains(h[0].Command, "release.test") {
				t.Errorf("holders %+v, want pid %d user %s running the test binary", h, want.Pid, want.User)
			}
			if err := CheckListener(context.Background(), "127.0.0.1", port, []int{cmd.Process.Pid}); err != nil {
				t.Errorf("held by a listed process: %v", err)
			}
		})
	}
}

func TestReceives(t *testing.T) {
	v4 := []string{"127.0.0.1"}
	for _, c := range []struct {
		bound   string
		targets []string
		want    bool
	}{
		{"127.0.0.1", v4, true},
		{"0.0.0.0", v4, true},
		{"::", v4, true}, // dual-stack
		{"::ffff:127.0.0.1", v4, true},
		{"127.0.0.2", v4, false},
		{"::1", v4, false},
		{"0.0.0.0", []string{"::1"}, false},
		{"::", []string{"::1"}, true},
		{"10.1.2.3", []string{"0.0.0.0"}, true}, // a wildcard target reaches anything
	} {
		t.Run(c.bound, func(t *testing.T) {
			if got := receives(mustAddr(t, c.bound), mustAddrs(t, c.targets)); got != c.want {
				t.Errorf("receives(%s, %v) = %v, want %v", c.bound, c.targets, got, c.want)
			}
		})
	}
}

func TestWaitListener(t *testing.T) {
	ctx := context.Background()
	free, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	// The listener appears between two looks (pids is asked before each).
	var ln net.Listener
	looks := 0
	pids := func() []int {
		looks++
		if looks == 3 {
			if ln, err = net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
				t.Fatal(err)
			}
		}
		return []int{os.Getpid()}
	}
	if err := WaitListener(ctx, "127.0.0.1", port, time.Minute, pids, nil); err != nil || looks != 3 {
		t.Errorf("WaitListener = %v after %d looks, want nil after 3", err, looks)
	}
	ln.Close()
	none := func() []int { return nil }
	if err := WaitListener(ctx, "127.0.0.1", port, 30*time.Millisecond, none, nil); !errors.Is(err, ErrNotListening) {
		t.Errorf("nothing listening: %v", err)
	}
	exited := make(chan struct{})
	close(exited)
	if err := WaitListener(ctx, "127.0.0.1", port, time.Hour, none, exited); !errors.Is(err, ErrExited) {
		t.Errorf("exited: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := WaitListener(cctx, "127.0.0.1", port, time.Hour, none, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustAddrs(t *testing.T, ss []string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = mustAddr(t, s).Unmap()
	}
	return out
}
