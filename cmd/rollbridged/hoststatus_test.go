package main

// The host drain state in status, through the real binaries: rollbridgectl
// drain-host and undrain-host against a real rollbridged, status (JSON
// and --watch) showing it, and a daemon restart keeping it with its time.

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// hostProxy is the proxy section of `rollbridgectl status`, raw, so the
// test sees what is on the wire (a key left out, not a zero value).
func (f *fixture) hostProxy() map[string]json.RawMessage {
	f.t.Helper()
	var st struct {
		Proxy map[string]json.RawMessage `json:"proxy"`
	}
	f.ctlOK(&st, "status")
	return st.Proxy
}

func TestStatusShowsHostDrainAcrossRestart(t *testing.T) {
	f := newFixture(t, 0, fmt.Sprintf(`{statePath: %q, proxy+: {hostHealthPath: '/_lb'}}`, filepath.Join(t.TempDir(), "state.json")))
	cmd := f.start(nil, "")
	f.waitReady()
	f.deploy("v1")

	px := f.hostProxy()
	if string(px["hostDrained"]) != "false" || px["hostDrainedSince"] != nil {
		t.Fatalf("status before drain-host: hostDrained %s, hostDrainedSince %s; want false and left out", px["hostDrained"], px["hostDrainedSince"])
	}

	var res control.HostResult
	f.ctlOK(&res, "drain-host")
	if !res.Drained || !res.Changed {
		t.Fatalf("drain-host answered %+v", res)
	}
	px = f.hostProxy()
	since := string(px["hostDrainedSince"])
	if string(px["hostDrained"]) != "true" || !isoMillis.MatchString(since) {
		t.Fatalf("status after drain-host: hostDrained %s, hostDrainedSince %s; want true and an ISO time", px["hostDrained"], since)
	}
	out, stderr, code := f.ctl("status", "--watch", "--count", "1")
	if code != 0 || !strings.Contains(out, "HOST DRAINED since ") {
		t.Fatalf("status --watch while drained: exit %d %s\n%s", code, stderr, out)
	}
	// Draining again changes nothing, not even the time.
	f.ctlOK(&res, "drain-host")
	if res.Changed {
		t.Fatalf("second drain-host answered %+v, want unchanged", res)
	}
	if got := string(f.hostProxy()["hostDrainedSince"]); got != since {
		t.Fatalf("hostDrainedSince after a second drain-host: %s, want the first drain's %s", got, since)
	}

	// A restarted daemon is still drained, since the same time.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("daemon after SIGTERM: %v", err)
	}
	f.start(nil, "")
	f.waitReady()
	px = f.hostProxy()
	if string(px["hostDrained"]) != "true" || string(px["hostDrainedSince"]) != since {
		t.Fatalf("status after a restart: hostDrained %s, hostDrainedSince %s; want true since %s", px["hostDrained"], px["hostDrainedSince"], since)
	}

	f.ctlOK(&res, "undrain-host")
	if res.Drained || !res.Changed {
		t.Fatalf("undrain-host answered %+v", res)
	}
	px = f.hostProxy()
	if string(px["hostDrained"]) != "false" || px["hostDrainedSince"] != nil {
		t.Fatalf("status after undrain-host: hostDrained %s, hostDrainedSince %s; want false and left out", px["hostDrained"], px["hostDrainedSince"])
	}
	if out, _, _ := f.ctl("status", "--watch", "--count", "1"); strings.Contains(out, "HOST DRAINED") {
		t.Fatalf("status --watch after undrain-host still says drained:\n%s", out)
	}
}
