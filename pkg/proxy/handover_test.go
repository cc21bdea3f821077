package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"
)

// fdStore is systemd's fd store as the tests need it: it keeps a
// duplicate of every stored descriptor, under its name, until removed,
// and hands out fresh duplicates the way LISTEN_FDS does.
type fdStore struct {
	mu    sync.Mutex
	fds   map[string]int
	full  bool // refuses every Store
	calls int
}

func newFDStore(t testing.TB) *fdStore {
	s := &fdStore{fds: map[string]int{}}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, fd := range s.fds {
			_ = unix.Close(fd)
		}
	})
	return s
}

func (s *fdStore) Store(names []string, files []*os.File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.full {
		return fmt.Errorf("store full")
	}
	for i, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			return err
		}
		var dup int
		var derr error
		if err := rc.Control(func(fd uintptr) { dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3) }); err != nil {
			return err
		}
		if derr != nil {
			return derr
		}
		s.fds[names[i]] = dup
	}
	return nil
}

func (s *fdStore) Remove(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if fd, ok := s.fds[n]; ok {
			_ = unix.Close(fd)
			delete(s.fds, n)
		}
	}
}

func (s *fdStore) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.fds {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// listen hands out a duplicate of every stored descriptor, named, as the
// next daemon gets them.
func (s *fdStore) listen(t testing.TB) []*os.File {
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

// tcpPair returns both ends of a loopback TCP connection: ours as a
// net.Conn, the other as a non-blocking *os.File.
func tcpPair(t testing.TB) (net.Conn, *os.File) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ours, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := fileOf(theirs)
	if err != nil {
		t.Fatal(err)
	}
	_ = theirs.Close() // f is a descriptor of its own
	t.Cleanup(func() { _ = ours.Close(); _ = f.Close() })
	return ours, f
}

// pattern is n bytes that differ from any shift of themselves, so a lost,
// doubled or reordered chunk shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.BigEndian.PutUint64(w[:], uint64(i/8))
		copy(b[i:], w[:])
	}
	return b
}

// TestSpliceResumesBetweenHalves stops the copy of one direction after
// every step — often after the socket-to-pipe half, with bytes in the pipe
// only — and hands its descriptors to a new direction each time, as a
// daemon killed there and its successor would. The receiver must get the
// sender's bytes exactly: none lost, none twice, in order.
func TestSpliceResumesBetweenHalves(t *testing.T) {
	sender, src := tcpPair(t)
	receiver, dst := tcpPair(t)
	pr, pw, err := newPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	want := pattern(4 << 20)
	go func() {
		_, _ = sender.Write(want)
		_ = sender.Close()
	}()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(receiver)
		got <- b
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	stoppedBetween := 0
	for {
		d, err := newDirection(src, pr, pw, dst)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.drain(); err != nil {
			t.Fatalf("drain: %v", err)
		}
		n, err := d.fill()
		if err != nil {
			t.Fatalf("fill: %v", err)
		}
		if n == 0 {
			break // EOF, and the pipe is empty
		}
		if rng.IntN(2) == 0 {
			stoppedBetween++
			continue // "killed" with n bytes in the pipe only
		}
		if err := d.drain(); err != nil {
			t.Fatalf("drain: %v", err)
		}
	}
	_ = dst.Close()
	b := recv(t, "the receiver's bytes", got)
	if !bytes.Equal(b, want) {
		t.Fatalf("received %d bytes, sent %d; first difference at %d", len(b), len(want), firstDiff(b, want))
	}
	if stoppedBetween == 0 {
		t.Fatal("no copy was stopped between its halves")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestParkAndResume: a WebSocket whose upgrade completed under an FDStore
// is stored there; Park stops copying and leaves it open; a new Proxy
// takes it back from the store's names (as the next daemon from
// LISTEN_FDNAMES), counts it on the backend of its release and copies
// again. Messages sent while nobody copied arrive, once and in order.
func TestParkAndResume(t *testing.T) {
	store := newFDStore(t)
	app := newWSApp(t, "A")
	p1 := New(Options{FDStore: store})
	srv := newServer(t, p1)
	activate(p1, "v1.2", app.addr)
	c := dialWS(t, srv)
	if got := echo(t, c, "m0"); got != "A:m0" {
		t.Fatalf("got %q", got)
	}
	names := store.names()
	if len(names) != 6 {
		t.Fatalf("stored %v, want the 6 descriptors of one connection", names)
	}
	p1.Park()

	// Nobody copies now: these wait in kernel buffers.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 1; i <= 3; i++ {
		if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf("m%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	conns, broken, rest := ParkedConns(store.listen(t))
	if len(conns) != 1 || len(broken) != 0 || len(rest) != 0 || conns[0].ReleaseID != "v1.2" {
		t.Fatalf("ParkedConns: %d conns (%+v), %d broken, %d other", len(conns), conns, len(broken), len(rest))
	}
	p2 := New(Options{FDStore: store})
	b2 := activate(p2, "v1.2", app.addr)
	p2.Resume(b2, conns[0])
	wantCounts(t, b2, 0, 1)
	for i := 1; i <= 3; i++ {
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != fmt.Sprintf("A:m%d", i) {
			t.Fatalf("after resume: %q %v, want A:m%d", got, err, i)
		}
	}
	if got := echo(t, c, "m4"); got != "A:m4" {
		t.Fatalf("got %q", got)
	}
	// The end of the connection empties the store.
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
	waitCounts(t, b2, 0, 0)
	if n := store.names(); len(n) != 0 {
		t.Errorf("store after the close: %v", n)
	}
	p2.Park()
}

// TestCloseConnectionsRemovesParked: killing a backend's connections closes
// spliced ones on both sides and removes them from the store.
func TestCloseConnectionsRemovesParked(t *testing.T) {
	store := newFDStore(t)
	app := newWSApp(t, "A")
	p := New(Options{FDStore: store})
	srv := newServer(t, p)
	b := activate(p, "v1", app.addr)
	c := dialWS(t, srv)
	echo(t, c, "x")
	b.CloseConnections()
	waitCounts(t, b, 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); err == nil {
		t.Error("client side still open")
	}
	recv(t, "the app side's end", app.ended)
	if n := store.names(); len(n) != 0 {
		t.Errorf("store: %v", n)
	}
}

// TestStoreRefusedCopiesInProcess: when the store refuses (full), the
// connection is copied as without one.
func TestStoreRefusedCopiesInProcess(t *testing.T) {
	store := newFDStore(t)
	store.full = true
	p := New(Options{FDStore: store})
	srv := newServer(t, p)
	activate(p, "v1", newWSApp(t, "A").addr)
	c := dialWS(t, srv)
	if got := echo(t, c, "x"); got != "A:x" || store.calls != 1 {
		t.Errorf("got %q after %d Store calls", got, store.calls)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
}

func newServer(t testing.TB, p *Proxy) string {
	t.Helper()
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return srv.URL
}

// spliceChildEnv makes the test binary a copier (TestMain): it copies
// descriptors 3..8 (the roles of spliceRoles) both ways until killed.
const spliceChildEnv = "RB_SPLICE_CHILD"

func runSpliceChild() int {
	f := func(i int) *os.File {
		_ = unix.SetNonblock(3+i, true)
		return os.NewFile(uintptr(3+i), spliceRoles[i])
	}
	p := &splicePair{client: f(0), app: f(1), upR: f(2), upW: f(3), downR: f(4), downW: f(5)}
	up, err1 := newDirection(p.client, p.upR, p.upW, p.app)
	down, err2 := newDirection(p.app, p.downR, p.downW, p.client)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, err1, err2)
		return 1
	}
	go func() { _ = down.run() }()
	_ = up.run()
	select {} // killed by the test
}

// TestSpliceSurvivesSIGKILL kills copier processes with SIGKILL at random
// moments while both directions stream, each time starting a new copier
// on the same six descriptors, which this test holds the way systemd's fd
// store does. Each side must receive the other's stream exactly.
func TestSpliceSurvivesSIGKILL(t *testing.T) {
	client, clientSide := tcpPair(t)
	app, appSide := tcpPair(t)
	upR, upW, err := newPipe()
	if err != nil {
		t.Fatal(err)
	}
	downR, downW, err := newPipe()
	if err != nil {
		t.Fatal(err)
	}
	held := []*os.File{clientSide, appSide, upR, upW, downR, downW}
	defer func() {
		for _, f := range held {
			_ = f.Close()
		}
	}()
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), spliceChildEnv+"=1")
		cmd.ExtraFiles = held
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	upWant, downWant := pattern(8<<20), pattern(6<<20)
	stream := func(c net.Conn, b []byte) {
		for len(b) > 0 { // in bursts, so kills fall at all moments
			n := min(len(b), 1+rand.IntN(96<<10))
			if _, err := c.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	}
	read := func(c net.Conn, n int, out chan<- []byte) {
		b := make([]byte, n)
		_, _ = io.ReadFull(c, b)
		out <- b
	}
	upGot, downGot := make(chan []byte, 1), make(chan []byte, 1)
	go stream(client, upWant)
	go stream(app, downWant)
	go read(app, len(upWant), upGot)
	go read(client, len(downWant), downGot)

	cmd := start()
	for range 15 {
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond) // a random moment, not a synchronisation
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		cmd = start()
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if b := recv(t, "the app's bytes", upGot); !bytes.Equal(b, upWant) {
		t.Errorf("client to app: first difference at %d of %d", firstDiff(b, upWant), len(upWant))
	}
	if b := recv(t, "the client's bytes", downGot); !bytes.Equal(b, downWant) {
		t.Errorf("app to client: first difference at %d of %d", firstDiff(b, downWant), len(downWant))
	}
}
