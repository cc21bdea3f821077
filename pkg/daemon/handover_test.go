package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"golang.org/x/sys/unix"
)

// dupStore is systemd's fd store as the daemon sees it: it keeps a
// duplicate of every stored descriptor until removed, and hands out
// duplicates, named, as LISTEN_FDS does at the next start.
type dupStore struct {
	mu  sync.Mutex
	fds map[string]int
}

func newDupStore(t *testing.T) *dupStore {
	s := &dupStore{fds: map[string]int{}}
	t.Cleanup(s.RemoveAll)
	return s
}

func (s *dupStore) Store(names []string, files []*os.File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range files {
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			return err
		}
		s.fds[names[i]] = fd
	}
	return nil
}

func (s *dupStore) Remove(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if fd, ok := s.fds[n]; ok {
			_ = unix.Close(fd)
			delete(s.fds, n)
		}
	}
}

func (s *dupStore) RemoveAll() {
	s.mu.Lock()
	var names []string
	for n := range s.fds {
		names = append(names, n)
	}
	s.mu.Unlock()
	s.Remove(names)
}

func (s *dupStore) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.fds {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s *dupStore) files(t *testing.T) []*os.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*os.File
	for n, fd := range s.fds {
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, os.NewFile(uintptr(dup), n))
	}
	return out
}

// TestKeepAliveConnectionHandedToTheNextDaemon: a daemon restart (its
// processes kept) with the fd store parks an idle keep-alive client
// connection; a POST sent on it while no daemon runs is answered by the
// next daemon, on the same connection, which leaves the store.
func TestKeepAliveConnectionHandedToTheNextDaemon(t *testing.T) {
	dir := shortDir(t)
	statePath := filepath.Join(dir, "state.json")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir, fmt.Sprintf(`{statePath: %q, processes: [{id: 'web', policy: 'proxied', command: '%s=1 PORT={{port}} exec %s', port: {from: 18300, to: 18399}, health: false}]}`,
		statePath, testAppEnv, exe))
	// The proxy socket outlives both daemons, as the socket unit's does;
	// each daemon gets a descriptor of its own.
	sock, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	inherit := func() net.Listener {
		f, err := sock.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	store := newDupStore(t)
	cancel, done := runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}, KeepProcesses: func() bool { return true },
		Listeners: Listeners{Proxy: inherit()}, Handover: &Handover{Store: store, Enabled: true}})
	c := &control.Client{Path: cfg.Control.Path}
	if _, err := c.Deploy(context.Background(), control.DeployRequest{ReleasePath: dir, ReleaseID: "v1"}, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", sock.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a lost answer fails, not hangs
	br := bufio.NewReader(conn)
	ask := func(req string) {
		t.Helper()
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%.20q: %v", req, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(b) != "ok\n" || res.Close {
			t.Fatalf("%.20q: %d %q (close %v), want 200 \"ok\" on a connection kept open", req, res.StatusCode, b, res.Close)
		}
	}
	ask("GET / HTTP/1.1\r\nHost: t\r\n\r\n")

	cancel() // a restart: processes kept
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for runDaemon's cleanup
	snap, err := state.Load(statePath)
	if err != nil {
		t.Fatal(err)
	}
	// The exec runner's kept process is this test's to end (it cannot be
	// adopted): now, so that no failure below leaves it running.
	for _, p := range snap.Processes {
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	}
	for _, p := range snap.Processes {
		testutil.Eventually(t, "the kept web gone", func() bool { return !state.Alive(p.Pid, 0) })
	}
	names := store.names()
	if len(names) != 1 || !strings.HasPrefix(names[0], "ka.") {
		t.Fatalf("fd store after the restart: %q, want the one keep-alive connection", names)
	}
	// Sent while no daemon runs: it waits in the socket.
	post := "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello=world"
	if _, err := io.WriteString(conn, post); err != nil {
		t.Fatal(err)
	}
	// The next daemon restores v1 from the state file (the exec runner
	// adopts nothing), holding the request meanwhile.
	runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}, Listeners: Listeners{Proxy: inherit()},
		Handover: &Handover{Store: store, Enabled: true, Parked: store.files(t)}})
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the POST sent during the restart: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != "ok\n" {
		t.Fatalf("the POST sent during the restart: %d %q", res.StatusCode, b)
	}
	if names := store.names(); len(names) != 0 {
		t.Errorf("fd store after the resume: %q, want empty", names)
	}
	ask("GET /again HTTP/1.1\r\nHost: t\r\n\r\n")
}
