package systemd

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// TestMain lets the test binary play a socket-activated child: it reports
// what ActivatedListeners returned.
func TestMain(m *testing.M) {
	if os.Getenv("RB_SYSTEMD_CHILD") == "1" {
		act, err := ActivatedListeners()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(0)
		}
		describe := func(ln net.Listener) string {
			if ln == nil {
				return "nil"
			}
			return ln.Addr().Network() + ":" + ln.Addr().String()
		}
		var stored []string
		for _, f := range act.Stored {
			stored = append(stored, f.Name())
		}
		fmt.Printf("proxy=%s control=%s listen_fds=%q", describe(act.Proxy), describe(act.Control), os.Getenv("LISTEN_FDS"))
		if len(stored) > 0 {
			fmt.Printf(" stored=%s", strings.Join(stored, ","))
		}
		if act.Metrics != nil {
			fmt.Printf(" metrics=%s", describe(act.Metrics))
		}
		fmt.Println()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "rbsd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// activatedChild runs this test binary with fds passed the way systemd does
// (fd 3 onwards, LISTEN_PID set to the child's own pid via exec in sh).
func activatedChild(t *testing.T, names string, files ...*os.File) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0"`, exe)
	cmd.Env = append(os.Environ(), "RB_SYSTEMD_CHILD=1", fmt.Sprintf("LISTEN_FDS=%d", len(files)), "LISTEN_FDNAMES="+names)
	cmd.ExtraFiles = files
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestActivatedListenersByName(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	sock := filepath.Join(shortDir(t), "c.sock")
	unix, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close()
	tf, _ := tcp.(*net.TCPListener).File()
	uf, _ := unix.(*net.UnixListener).File()
	defer tf.Close()
	defer uf.Close()

	out := activatedChild(t, "control:proxy", uf, tf)
	want := fmt.Sprintf("proxy=tcp:%s control=unix:%s listen_fds=\"\"", tcp.Addr(), sock)
	if out != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	// The fd store's descriptors come back beside the listeners, by name.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	// A parked keep-alive connection ("ka.") too: a socket, not a listener.
	kc, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kf, _ := kc.(*net.TCPConn).File()
	defer kf.Close()
	out = activatedChild(t, "proxy:ws.v1.0a.ur:ws.v1.0a.uw:ka.0b:control", tf, r, w, kf, uf)
	if want := fmt.Sprintf("proxy=tcp:%s control=unix:%s listen_fds=\"\" stored=ws.v1.0a.ur,ws.v1.0a.uw,ka.0b", tcp.Addr(), sock); out != want {
		t.Errorf("with stored descriptors:\ngot  %s\nwant %s", out, want)
	}
	// The metrics socket (rollbridge-metrics@.socket) by its name.
	m, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mf, _ := m.(*net.TCPListener).File()
	defer mf.Close()
	out = activatedChild(t, "proxy:metrics:control", tf, mf, uf)
	if want := fmt.Sprintf("proxy=tcp:%s control=unix:%s listen_fds=\"\" metrics=tcp:%s", tcp.Addr(), sock, m.Addr()); out != want {
		t.Errorf("with a metrics socket:\ngot  %s\nwant %s", out, want)
	}
	out = activatedChild(t, "web", tf)
	if !strings.Contains(out, `unexpected socket name(s) web`) || !strings.Contains(out, "FileDescriptorName=proxy") {
		t.Errorf("unknown name: %s", out)
	}
	out = activatedChild(t, "proxy:proxy", tf, tf)
	if !strings.Contains(out, `2 sockets named "proxy"`) {
		t.Errorf("duplicate name: %s", out)
	}
}

func TestNoActivation(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	act, err := ActivatedListeners()
	if err != nil || act.Proxy != nil || act.Control != nil {
		t.Errorf("got %+v, %v", act, err)
	}
}

// listenNotify binds a unixgram socket, as systemd's notify socket, and
// points NOTIFY_SOCKET at it for the test.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(shortDir(t), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// notifySocket listens on a unixgram NOTIFY_SOCKET and returns received messages.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	conn := listenNotify(t)
	ch := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
		return ""
	}
}

func TestNotifier(t *testing.T) {
	ch := notifySocket(t)
	n := NewNotifier()
	if !n.Enabled() {
		t.Fatal("notifier disabled with NOTIFY_SOCKET set")
	}
	n.Ready("active v1")
	if m := recv(t, ch); m != "READY=1\nSTATUS=active v1" {
		t.Errorf("ready: %q", m)
	}
	n.Status("active v2")
	if m := recv(t, ch); m != "STATUS=active v2" {
		t.Errorf("status: %q", m)
	}
	n.Reloading()
	if m := recv(t, ch); !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("reloading: %q", m)
	}
	n.Watchdog()
	if m := recv(t, ch); m != "WATCHDOG=1" {
		t.Errorf("watchdog: %q", m)
	}
	n.Stopping()
	if m := recv(t, ch); m != "STOPPING=1" {
		t.Errorf("stopping: %q", m)
	}
}

func TestNotifierOffWithoutSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := NewNotifier()
	if n.Enabled() {
		t.Error("enabled without NOTIFY_SOCKET")
	}
	n.Ready("x") // must not panic or block
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "2000000")
	t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))
	if got := WatchdogInterval(); got != time.Second {
		t.Errorf("got %v, want half of 2s", got)
	}
	t.Setenv("WATCHDOG_PID", "1")
	if got := WatchdogInterval(); got != 0 {
		t.Errorf("another process's watchdog: got %v, want 0", got)
	}
	t.Setenv("WATCHDOG_USEC", "")
	if got := WatchdogInterval(); got != 0 {
		t.Errorf("no watchdog: got %v", got)
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"releaseId": "RELEASE_ID", "id": "ID", "previousReleaseId": "PREVIOUS_RELEASE_ID",
		"exitCode": "EXIT_CODE", "rssBytes": "RSS_BYTES", "_x": "X", "a-b": "A_B",
	} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEventFieldsProcessIDs: the journal's ROLLBRIDGE_PROCESS_ID stays the
// base id and ROLLBRIDGE_INSTANCE_ID the instance id, although the event
// data's "processId" is the instance id (the spec's key).
func TestEventFieldsProcessIDs(t *testing.T) {
	for _, tc := range []struct {
		name           string
		data           map[string]any
		process, inst  string
		wantInstanceOK bool
	}{
		{"process event", map[string]any{"processId": "worker#1", "id": "worker#1", "baseId": "worker", "releaseId": "v2"}, "worker", "worker#1", true},
		{"restart requested", map[string]any{"processId": "worker#0", "baseId": "worker"}, "worker", "worker#0", true},
		{"service event", map[string]any{"id": "beacon", "pid": 7}, "beacon", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := eventFields("shop", events.Event{Message: "process exited", Data: tc.data})
			if got["ROLLBRIDGE_PROCESS_ID"] != tc.process {
				t.Errorf("ROLLBRIDGE_PROCESS_ID = %q, want %q", got["ROLLBRIDGE_PROCESS_ID"], tc.process)
			}
			if inst, ok := got["ROLLBRIDGE_INSTANCE_ID"]; ok != tc.wantInstanceOK || inst != tc.inst {
				t.Errorf("ROLLBRIDGE_INSTANCE_ID = %q (set %v), want %q", inst, ok, tc.inst)
			}
			if got["ROLLBRIDGE_APPLICATION"] != "shop" || got["ROLLBRIDGE_EVENT"] != "process exited" {
				t.Errorf("fields %v", got)
			}
		})
	}
}
