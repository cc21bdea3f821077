package allocstats

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

var sink [][]byte

// allocate makes n heap objects of size bytes each.
func allocate(n, size int) {
	sink = make([][]byte, n)
	for i := range sink {
		sink[i] = make([]byte, size)
	}
}

func TestReadCountsAllocations(t *testing.T) {
	before := Read()
	allocate(1000, 1024)
	d := Read().Sub(before)
	if d.Objects < 1000 || d.Bytes < 1000*1024 {
		t.Fatalf("after 1000 allocations of 1 KiB the counters moved by %d objects, %d bytes", d.Objects, d.Bytes)
	}
}

// Tiny allocations (pointer-free, under 16 bytes) are counted one by one,
// as testing.AllocsPerRun counts them, not per 16-byte block.
func TestReadCountsTinyAllocations(t *testing.T) {
	before := Read()
	allocate(0, 0)
	tiny := make([]*[4]byte, 4000)
	for i := range tiny {
		tiny[i] = new([4]byte)
	}
	d := Read().Sub(before)
	if d.Objects < 4000 {
		t.Fatalf("4000 tiny allocations counted as %d objects", d.Objects)
	}
	_ = tiny
}

func TestListenServesTheCounters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allocs.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", st.Mode().Perm())
	}
	a, err := Fetch(path)
	if err != nil {
		t.Fatal(err)
	}
	allocate(1000, 1024)
	b, err := Fetch(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := b.Sub(a); d.Objects < 1000 || d.Bytes < 1000*1024 {
		t.Fatalf("served counters moved by %d objects, %d bytes across 1000 allocations of 1 KiB", d.Objects, d.Bytes)
	}
	ln.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after close: %v", err)
	}
	if _, err := Fetch(path); err == nil {
		t.Fatal("fetch after close answered")
	}
}

func TestListenRefusesAnExistingPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "taken")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen(path); err == nil {
		ln.Close()
		t.Fatal("listened over an existing file")
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Fatal("existing file changed")
	}
}

// A killed daemon leaves its socket behind; the next start must not fail
// on it, and a live one must not be taken over.
func TestListenReplacesAStaleSocketOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allocs.sock")
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // the file stays, nobody answers: as after a SIGKILL
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("a stale socket blocked the start: %v", err)
	}
	defer ln.Close()
	if _, err := Fetch(path); err != nil {
		t.Fatal(err)
	}
	if ln2, err := Listen(path); err == nil {
		ln2.Close()
		t.Fatal("took over a socket another listener serves")
	}
	if _, err := Fetch(path); err != nil {
		t.Fatalf("the live socket was broken: %v", err)
	}
}

func TestListenRefusesADirectoryOthersMayWrite(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen(filepath.Join(dir, "allocs.sock")); err == nil {
		ln.Close()
		t.Fatal("listened in a world-writable, non-sticky directory")
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(filepath.Join(dir, "allocs.sock"))
	if err != nil {
		t.Fatalf("a sticky directory (as /tmp) was refused: %v", err)
	}
	ln.Close()
}
