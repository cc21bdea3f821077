package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/allocstats"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// With ROLLBRIDGE_ALLOCSTATS_SOCKET set, the daemon serves its allocation
// counters, and they grow with proxied requests (the benchmark suite divides
// the growth by the requests of a run); the socket goes away with the daemon.
// On the net/http path: the event loop allocates next to nothing per
// request (the benchmark suite measures that), so its growth would say
// little about the counters.
func TestAllocStatsSocket(t *testing.T) {
	f := newFixture(t, 0, "{}")
	sock := filepath.Join(f.dir, "allocs.sock")
	cmd := f.start([]string{allocstats.EnvSocket + "=" + sock, "ROLLBRIDGE_EVENT_LOOP=off"}, "")
	f.waitReady()
	f.deploy("v1")
	st, err := f.client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	port := st.Proxy.Port
	before, err := allocstats.Fetch(sock)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := 0; i < n; i++ {
		if code, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); code != 200 {
			t.Fatalf("request %d: status %d", i, code)
		}
	}
	after, err := allocstats.Fetch(sock)
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Sub(before); d.Objects < n || d.Bytes < n*100 {
		t.Fatalf("%d proxied requests moved the counters by %d objects, %d bytes", n, d.Objects, d.Bytes)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after the daemon stopped: %v", err)
	}
}

// Off by default: no socket unless asked for.
func TestAllocStatsSocketOffByDefault(t *testing.T) {
	f := newFixture(t, 0, "{}")
	f.start(nil, "")
	f.waitReady()
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type()&os.ModeSocket != 0 && e.Name() != "c.sock" {
			t.Fatalf("unexpected socket %s", e.Name())
		}
	}
}

// A path that exists already is refused at startup, not replaced.
func TestAllocStatsSocketRefusesAnExistingPath(t *testing.T) {
	f := newFixture(t, 0, "{}")
	p := filepath.Join(f.dir, "taken")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := f.start([]string{allocstats.EnvSocket + "=" + p}, "")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err == nil {
			t.Fatal("the daemon exited 0")
		}
	case <-time.After(testutil.Timeout):
		t.Fatal("the daemon started over an existing path")
	}
	if b, _ := os.ReadFile(p); string(b) != "x" {
		t.Fatal("the existing file was changed")
	}
}
