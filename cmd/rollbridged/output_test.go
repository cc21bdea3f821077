package main

// Output retention is bounded (docs/security.md, "The release's processes
// and the daemon's memory"): per process, across the daemon, and in every
// status answer.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// TestOutputRetentionIsBounded: 40 replicas each print 20 lines of 64 KiB
// (the longest line kept) with outputLines: 3000, 52 MB in all. Each keeps
// at most 1 MiB, all of them together at most 32 MiB, every one keeps its
// newest line, and a status answer carries at most 1 MiB of lines, the
// newest of each process.
func TestOutputRetentionIsBounded(t *testing.T) {
	const replicas, lines = 40, 20
	script := filepath.Join(t.TempDir(), "noisy.sh")
	src := fmt.Sprintf("line=$(head -c 65535 /dev/zero | tr '\\0' x)\nfor i in $(seq %d); do printf '%%s\\n' \"$line\"; done\necho done\nexec sleep 100000\n", lines)
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, 0, fmt.Sprintf(`{processes+: [{id: 'noisy', replicas: %d, outputLines: 3000, command: 'exec sh %s'}]}`, replicas, script))
	f.start(nil, "")
	f.waitReady()
	f.deploy("v1")

	client := f.client()
	// Status has each process's newest line: cheaper to poll than logs.
	testutil.Eventually(t, "every replica's output to be read", func() bool {
		done := 0
		for _, p := range f.status().Releases[0].Processes {
			if n := len(p.Logs); n > 0 && p.Logs[n-1].Line == "done" {
				done++
			}
		}
		return done == replicas
	})
	res, err := client.Logs(context.Background(), control.LogsRequest{ProcessID: "noisy"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Processes) != replicas {
		t.Fatalf("logs has %d noisy processes, want %d", len(res.Processes), replicas)
	}
	total := 0
	for _, p := range res.Processes {
		n := size(p.Logs)
		if n > process.MaxProcessOutput {
			t.Errorf("%s keeps %d bytes, over the %d per process", p.ID, n, process.MaxProcessOutput)
		}
		total += n
	}
	if total > process.MaxDaemonOutput {
		t.Errorf("the daemon keeps %d bytes of output, over its %d", total, process.MaxDaemonOutput)
	}

	raw, err := client.Do(context.Background(), &control.Request{Command: control.CmdStatus}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var st control.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	inStatus := 0
	for _, p := range st.Releases[0].Processes {
		n := size(p.Logs)
		inStatus += n
		if p.ID == "web" {
			continue
		}
		if n > process.StatusLogBytes || len(p.Logs) == 0 || p.Logs[len(p.Logs)-1].Line != "done" || p.LogsOmitted == 0 {
			t.Errorf("status of %s: %d lines, %d bytes, %d omitted; want the newest lines within %d bytes, ending in done",
				p.ID, len(p.Logs), n, p.LogsOmitted, process.StatusLogBytes)
		}
	}
	if inStatus > 1<<20 {
		t.Errorf("a status answer carries %d bytes of output, over 1 MiB", inStatus)
	}
	t.Logf("status answer: %d bytes; output retained: %d bytes", len(raw), total)
}

// size is what lines count for against the caps (process.Line.Size).
func size(lines []control.LogLine) int {
	n := 0
	for _, l := range lines {
		n += process.Line{Line: l.Line}.Size()
	}
	return n
}
