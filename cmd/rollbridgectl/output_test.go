package main

// rollbridgectl logs reads the full output through the logs command; status
// carries only the newest lines (docs/cli.md, docs/protocol.md).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// TestLogsReadsTheFullOutput: a process printed more than a status answer
// carries for it; rollbridgectl logs shows all its retained lines.
func TestLogsReadsTheFullOutput(t *testing.T) {
	// 300 lines of 100 bytes: 49 KiB as the caps count them, within the
	// process's 1 MiB, above status's 16 KiB per process.
	e := startDaemon(t, `[{id: 'chatty', outputLines: 1000, command: 'i=0; while [ $i -lt 300 ]; do printf "line %03d %091d\n" $i 0; i=$((i+1)); done; echo done; exec sleep 1000'}]`)
	e.mustDeploy("v1")
	var sources []control.ProcessLogs
	testutil.Eventually(t, "all of chatty's output", func() bool {
		e.ok(&sources, "logs", "--json", "--process", "chatty")
		return len(sources) == 1 && len(sources[0].Logs) == 301 && sources[0].Logs[300].Line == "done"
	})
	if got := sources[0].Logs[0].Line; !strings.HasPrefix(got, "line 000 ") {
		t.Errorf("the oldest line is %q, want line 000", got)
	}
	var st control.Status
	e.ok(&st, "status")
	p := st.Releases[0].Processes[0]
	if p.ID != "chatty" || len(p.Logs) >= 301 || p.LogsOmitted != 301-len(p.Logs) || p.Logs[len(p.Logs)-1].Line != "done" {
		t.Errorf("status of %s: %d lines ending %q, %d omitted; want the newest lines within 16 KiB and the rest counted",
			p.ID, len(p.Logs), p.Logs[len(p.Logs)-1].Line, p.LogsOmitted)
	}
	out, _, code := e.ctl("logs", "--process", "chatty")
	if code != 0 || strings.Count(out, " [stdout] line ") != 300 {
		t.Errorf("logs --process chatty: exit %d, %d output lines", code, strings.Count(out, "\n"))
	}
}

// TestLogsFromADaemonWithoutTheLogsCommand: the Node original has no logs
// command and answers it with an error without a code; rollbridgectl logs
// then builds the list from status, as the original's CLI does.
func TestLogsFromADaemonWithoutTheLogsCommand(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "node.sock")
	ln := listenUnix(t, sock)
	var mu sync.Mutex
	var asked []string
	status := `{"status":"success","activeReleaseId":"v1","application":"shop","releases":[{"releaseId":"v1","state":"active",` +
		`"processes":[{"id":"web","logs":[{"at":"2026-11-26T14:30:01.130Z","line":"listening","stream":"stdout"}]}]}],"services":[],"singletons":[]}`
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by the test
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil {
				var req struct{ Command string }
				_ = json.Unmarshal([]byte(line), &req) // a bad line is answered as an unknown command
				mu.Lock()
				asked = append(asked, req.Command)
				mu.Unlock()
				answer := status
				if req.Command != "status" {
					answer = fmt.Sprintf(`{"status":"error","error":"Unknown command: %s"}`, req.Command)
				}
				_, _ = c.Write([]byte(answer + "\n"))
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })

	out, errOut, code := runCtl(t, "logs", "--socket", sock)
	want := "== web [release v1 (active)] ==\n  2026-11-26T14:30:01.130Z [stdout] listening\n"
	if code != 0 || out != want {
		t.Errorf("logs: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(asked, ",") != "logs,status" {
		t.Errorf("the daemon was asked %v, want logs, then status", asked)
	}
}
