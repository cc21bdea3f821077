// Package allocstats hands the benchmark suite the daemon's cumulative heap
// allocation counters, so that it can report allocations and bytes
// allocated per proxied request (docs/performance.md) from the daemon
// itself rather than from a benchmark inside a test binary.
//
// It is opt-in (rollbridged serves the counters only when
// ROLLBRIDGE_ALLOCSTATS_SOCKET names a socket path) and off the request
// path: the counters are the Go runtime's own (runtime.MemStats), read only
// when a client connects, typically once before and once after a load run.
package allocstats

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// EnvSocket names the environment variable that turns the socket on.
const EnvSocket = "ROLLBRIDGE_ALLOCSTATS_SOCKET"

// Counters are cumulative since the process started.
type Counters struct {
	// Bytes is the memory allocated on the heap (MemStats.TotalAlloc).
	Bytes uint64 `json:"bytes"`
	// Objects counts heap allocations, tiny ones included, as
	// testing.AllocsPerRun counts them (MemStats.Mallocs).
	Objects uint64 `json:"objects"`
}

// Sub is c - before: what was allocated between two reads.
func (c Counters) Sub(before Counters) Counters {
	return Counters{Bytes: c.Bytes - before.Bytes, Objects: c.Objects - before.Objects}
}

// Read returns this process's counters. It uses runtime.ReadMemStats, which
// stops the world for a few microseconds, rather than runtime/metrics,
// which does not but counts per span (each P's cached spans are counted
// when they go back, so two reads can be off by a span per size class): a
// client reads twice per load run, so exact counts are worth the pause.
func Read() Counters {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return Counters{Bytes: m.TotalAlloc, Objects: m.Mallocs}
}

// Listen creates the socket at path (owner-only: 0600) and answers every
// connection with one JSON line of Read's counters, until the returned
// listener is closed (which removes the socket). The path must not exist,
// except as a stale socket of ours that nobody answers on (a daemon that
// was killed leaves it behind). Its directory must not be writable by
// other users unless it is sticky (as /tmp is): otherwise one of them could
// swap the socket for a symlink between the bind and the chmod below.
func Listen(path string) (net.Listener, error) {
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	if dir.Mode().Perm()&0o022 != 0 && dir.Mode()&os.ModeSticky == 0 {
		return nil, fmt.Errorf("%s is writable by other users and not sticky: use a directory of your own", filepath.Dir(path))
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond) // e.g. out of descriptors: do not spin
				continue
			}
			// Read before writing anything: the client gets the counters
			// as of its connection, not as of a slow write.
			b, _ := json.Marshal(Read())
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write(append(b, '\n'))
			c.Close()
		}
	}()
	return ln, nil
}

// removeStale removes path if it is a socket owned by this user that
// refuses connections: what a killed daemon leaves. Anything else stays,
// and the bind then fails on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another process serves this socket", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	return os.Remove(path)
}

// Fetch reads the counters served at path.
func Fetch(path string) (Counters, error) {
	var c Counters
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return c, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if err := json.NewDecoder(conn).Decode(&c); err != nil {
		return c, fmt.Errorf("allocation counters at %s: %w", path, err)
	}
	return c, nil
}
