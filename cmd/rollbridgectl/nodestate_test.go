package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// A host switched over from the Node original has the Node daemon's state
// file, in its own format, and maybe processes that daemon left running.
// These tests write such a file by hand (the 0.1.7 shape) around real
// processes, and run the real binaries on it.

// writeNodeState writes a Node state file listing web (release v2) and the
// service beacon, with the given Node control socket.
func writeNodeState(t *testing.T, path, nodeSock string, web, beacon int) {
	t.Helper()
	at := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	procEntry := func(id string, pid int) map[string]any {
		return map[string]any{"children": []any{}, "command": "bin/" + id, "cwd": "/srv/shop/2", "id": id, "logs": []any{},
			"memoryRestarts": 0, "pid": pid, "restarts": 0, "startedAt": at, "state": "running", "uptimeMs": 5}
	}
	snap := map[string]any{
		"activeReleaseId": "v2", "application": "shop", "control": map[string]any{"path": nodeSock},
		"proxy": map[string]any{"host": "127.0.0.1", "port": 8182, "upstreamHost": "127.0.0.1"},
		"releases": []any{map[string]any{"activatedAt": at, "connectionCount": 0, "connections": map[string]any{"http": 0, "websocket": 0},
			"ports": map[string]any{"web": 18183}, "processes": []any{procEntry("web", web)}, "releaseId": "v2",
			"releasePath": "/srv/shop/2", "revision": "v2", "state": "active"}},
		"services":    []any{map[string]any{"id": "beacon", "process": procEntry("beacon", beacon)}},
		"singletons":  []any{},
		"events":      []any{map[string]any{"at": at, "data": map[string]any{"releaseId": "v2"}, "message": "traffic switched"}},
		"persistedAt": at,
	}
	b, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNodeStateFile(t *testing.T) {
	cfg, statePath, sock := recoverFixture(t, "{}")
	dir := filepath.Dir(cfg)
	nodeSock := filepath.Join(dir, "node.sock")
	web, webStart := spawnGroup(t, "exec sleep 300")
	beacon, beaconStart := spawnGroup(t, "exec sleep 301")
	writeNodeState(t, statePath, nodeSock, web, beacon)
	orig := readFile(t, statePath)

	t.Run("doctor names them", func(t *testing.T) {
		out, _, code := ctlExec(t, dir, nil, "doctor", "-c", cfg)
		want := fmt.Sprintf("✗ orphaned processes: still running from the Node rollbridge daemon (state file %s): web (pid %d, release v2), beacon (pid %d)", statePath, web, beacon)
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output lacks %q:\n%s", code, want, out)
		}
	})

	t.Run("rollbridged refuses to start and leaves the file alone", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "rollbridged")
		if out, err := exec.Command("go", "build", "-o", bin, "../rollbridged").CombinedOutput(); err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		out, err := exec.Command(bin, "-c", cfg).CombinedOutput()
		want := fmt.Sprintf("statePath %s is the Node rollbridge daemon's state file, and 2 of its processes still run: web (pid %d), beacon (pid %d); "+
			"stop the Node daemon (rollbridge shutdown) or run rollbridgectl recover --force", statePath, web, beacon)
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("rollbridged: %v, output lacks %q:\n%s", err, want, out)
		}
		if got := readFile(t, statePath); got != orig {
			t.Errorf("the Node state file changed:\n%s", got)
		}
		if _, err := os.Stat(sock); err == nil {
			t.Errorf("the control socket was left behind")
		}
	})

	t.Run("recover lists them", func(t *testing.T) {
		out, errOut, code := ctlExec(t, dir, nil, "recover", "-c", cfg)
		want := fmt.Sprintf("Found 2 orphaned processes (run with --force to stop):\n  web (pid %d, release v2)\n  beacon (pid %d)\n"+
			"Review the list first; %s is the Node rollbridge daemon's state file, and each one has the pid (and, where recorded, the start time) it names.\n",
			web, beacon, statePath)
		if code != 0 || out != want {
			t.Errorf("exit %d, stdout\n%s\nwant\n%s\nstderr %s", code, out, want, errOut)
		}
	})

	t.Run("recover refuses while the Node daemon answers", func(t *testing.T) {
		ln := listenUnix(t, nodeSock)
		defer ln.Close()
		_, errOut, code := ctlExec(t, dir, nil, "recover", "-c", cfg, "--force")
		want := fmt.Sprintf("rollbridgectl: %s is the Node rollbridge daemon's state file, and that daemon still runs on %s; stop it", statePath, nodeSock)
		if code != 1 || !strings.HasPrefix(errOut, want) {
			t.Errorf("exit %d, stderr %q, want it to start with %q", code, errOut, want)
		}
		if !state.Alive(web, webStart) || !state.Alive(beacon, beaconStart) {
			t.Error("a process was stopped")
		}
	})

	t.Run("predeploy-cleanup stops them", func(t *testing.T) {
		out, errOut, code := ctlExec(t, dir, nil, "predeploy-cleanup", "-c", cfg)
		if code != 0 || !strings.Contains(out, "Recovered 2 Rollbridge orphaned processes.") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if state.Alive(web, webStart) || state.Alive(beacon, beaconStart) {
			t.Error("a Node orphan still runs")
		}
		if _, err := os.Stat(statePath); !os.IsNotExist(err) {
			t.Errorf("the state file was not removed: %v", err)
		}
	})
}

// TestNodeStateFileElsewhere: while rollbridged has a state file of its
// own, --state-path points doctor and recover at the Node daemon's.
func TestNodeStateFileElsewhere(t *testing.T) {
	cfg, _, _ := recoverFixture(t, "{}")
	dir := filepath.Dir(cfg)
	nodeState := filepath.Join(dir, "node-state.json")
	web, webStart := spawnGroup(t, "exec sleep 300")
	writeNodeState(t, nodeState, filepath.Join(dir, "node.sock"), web, deadPidOf(t))
	out, _, code := ctlExec(t, dir, nil, "doctor", "-c", cfg, "--state-path", nodeState)
	if code != 1 || !strings.Contains(out, fmt.Sprintf("from the Node rollbridge daemon (state file %s): web (pid %d, release v2); check them", nodeState, web)) {
		t.Errorf("doctor: exit %d\n%s", code, out)
	}
	out, errOut, code := ctlExec(t, dir, nil, "recover", "-c", cfg, "--state-path", nodeState, "--force")
	if code != 0 || out != fmt.Sprintf("Stopped 1 orphaned process:\n  web (pid %d, release v2)\n", web) {
		t.Errorf("recover --force: exit %d\n%s%s", code, out, errOut)
	}
	if state.Alive(web, webStart) {
		t.Error("web still runs")
	}
	if _, err := os.Stat(nodeState); !os.IsNotExist(err) {
		t.Errorf("the Node state file was not removed: %v", err)
	}
}

func deadPidOf(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}
