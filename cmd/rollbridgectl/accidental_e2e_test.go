package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// The tests in this file pin deviations from the Node original that were
// accidents and are now fixed (issue 11, the review of docs/migrating.md
// §3), through rollbridgectl and the daemon.

// settled waits until no release is starting or draining.
func (e *env) settled() {
	e.t.Helper()
	testutil.Eventually(e.t, "no release starting or draining", func() bool {
		ids := e.releaseIDs()
		return !strings.Contains(ids, ":draining") && !strings.Contains(ids, ":starting")
	})
}

// Retention keeps the releases stopped most recently, as the original
// does: a release a rollback brought back keeps its old place in the list,
// yet it is the newest rollback target once it retires again.
func TestE2ERetentionKeepsTheMostRecentlyStopped(t *testing.T) {
	e := startReloading(t, `releaseRetention: {keep: 2},`, `{}`, `[]`)
	for _, id := range []string{"v1", "r2", "r3"} {
		e.mustDeploy(id)
		e.settled()
	}
	var res map[string]any
	e.ok(&res, "rollback", "--release-id", "v1")
	e.settled()
	e.mustDeploy("r4")
	e.settled()
	if got, want := e.releaseIDs(), "v1:stopped,r3:stopped,r4:active"; got != want {
		t.Errorf("releases %s, want %s (r2 stopped first and goes first)", got, want)
	}
	e.ok(&res, "rollback")
	if res["activeReleaseId"] != "v1" {
		t.Errorf("rollback went to %v, want v1, the release that served last", res["activeReleaseId"])
	}
}

// raw sends one request line on a connection of its own, as the Node
// client does, and decodes the answer line.
func (e *env) raw(line string) map[string]any {
	e.t.Helper()
	conn, err := net.Dial("unix", e.sock)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintln(conn, line); err != nil {
		e.t.Fatal(err)
	}
	answer, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		e.t.Fatalf("%s: %v", line, err)
	}
	var m map[string]any
	if err := json.Unmarshal(answer, &m); err != nil {
		e.t.Fatalf("%s: %v: %s", line, err, answer)
	}
	return m
}

// restart goes through the processes in config order, as the original
// does, whatever their policy; and a policy no process has (an unknown one
// sent over the socket) restarts nothing, without an error.
func TestE2ERestartInConfigOrder(t *testing.T) {
	e := startReloading(t, ``, `{}`, `[{id: 'zeta', policy: 'singleton', command: 'exec sleep 1000'},
		{id: 'beacon', policy: 'service', command: 'exec sleep 1000'},
		{id: 'worker', command: 'exec sleep 1000', replicas: 2},
		{id: 'alpha', policy: 'singleton', command: 'exec sleep 1000'}]`)
	e.mustDeploy("v1")
	var res struct{ Restarted []string }
	e.ok(&res, "restart")
	if got, want := strings.Join(res.Restarted, ","), "zeta,beacon,worker#0,worker#1,alpha"; got != want {
		t.Errorf("restarted %s, want %s", got, want)
	}
	e.ok(&res, "restart", "--policy", "singleton")
	if got, want := strings.Join(res.Restarted, ","), "zeta,alpha"; got != want {
		t.Errorf("restart --policy singleton: %s, want %s", got, want)
	}
	if a := e.raw(`{"command":"restart","policy":"sidecar"}`); a["status"] != "success" || fmt.Sprint(a["restarted"]) != "[]" {
		t.Errorf("unknown policy: %v, want success with restarted []", a)
	}
	if a := e.raw(`{"command":"restart","processId":"zeta","policy":"sidecar"}`); a["status"] != "error" || !strings.Contains(fmt.Sprint(a["error"]), `"zeta"`) {
		t.Errorf("a process with an unknown policy: %v, want not found", a)
	}
}

// events reads limit only when it is a number, as the original does;
// anything else means every event.
func TestE2EEventsLimitNotANumber(t *testing.T) {
	e := startReloading(t, ``, `{}`, `[]`)
	e.mustDeploy("v1")
	all := e.raw(`{"command":"events"}`)["events"].([]any)
	for _, limit := range []string{`"2"`, `true`, `{"n":2}`, `[2]`} {
		a := e.raw(`{"command":"events","limit":` + limit + `}`)
		if evs, ok := a["events"].([]any); a["status"] != "success" || !ok || len(evs) < len(all) {
			t.Errorf("limit %s: %v, want success with every event (%d)", limit, a, len(all))
		}
	}
	if evs := e.raw(`{"command":"events","limit":2}`)["events"].([]any); len(evs) != 2 {
		t.Errorf("limit 2: %d events", len(evs))
	}
}

// stop --help says what stop does: singletons keep running.
func TestStopHelp(t *testing.T) {
	out, _, code := runCtl(t, "stop", "--help")
	if code != 0 || !strings.Contains(out, "Services and\n   singletons keep running") || strings.Contains(out, "also stops the singletons") {
		t.Errorf("stop --help: exit %d\n%s", code, out)
	}
}

// <, > and & are written as they are, as JSON.stringify writes them, both
// on the socket and in what rollbridgectl prints.
func TestE2ENoHTMLEscaping(t *testing.T) {
	e := startReloading(t, ``, `{}`, `[{id: 'svc', policy: 'service', command: 'true && exec sleep 1000 # <x>'}]`)
	e.mustDeploy("v1")
	const cmd = `true && exec sleep 1000 # <x>`
	out, _, code := e.ctl("status")
	if code != 0 || !strings.Contains(out, `"command": "`+cmd+`"`) {
		t.Errorf("status prints the command escaped (exit %d):\n%s", code, out)
	}
	conn, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for _, tc := range []struct{ req, want string }{
		{`{"command":"status"}`, `"command":"` + cmd + `"`},
		{`{"command":"restart","processId":"<a>&b"}`, `<a>&b`},
	} {
		fmt.Fprintln(conn, tc.req)
		line, err := r.ReadString('\n')
		if err != nil || !strings.Contains(line, tc.want) || strings.Contains(line, `\u00`) {
			t.Errorf("%s: %v, answer lacks %s or escapes:\n%s", tc.req, err, tc.want, line)
		}
	}
}

// Empty output lines are dropped, as the original drops them, so they take
// none of outputLines' places.
func TestE2EBlankOutputLinesDropped(t *testing.T) {
	e := startReloading(t, ``, `{}`, `[{id: 'worker', outputLines: 2, command: 'printf "a\\n\\n\\nb\\n\\n"; exec sleep 1000'}]`)
	e.mustDeploy("v1")
	var got string
	testutil.Eventually(t, "the worker's output", func() bool {
		var logs []struct {
			Logs []struct{ Line string }
		}
		e.ok(&logs, "logs", "--json", "--process", "worker")
		var lines []string
		for _, l := range logs[0].Logs {
			lines = append(lines, l.Line)
		}
		got = strings.Join(lines, "|")
		return strings.Contains(got, "b")
	})
	if got != "a|b" {
		t.Errorf("worker logs %q, want a|b", got)
	}
}

// Only the original's placeholder pattern is a placeholder: a Docker or Go
// template in a command, or a lone {{, passes validate and reaches the
// shell as it is.
func TestE2EBracesThatAreNoPlaceholder(t *testing.T) {
	const worker = `[{id: 'worker', command: 'echo "{{json .State}}" {{ {{releaseId}}; exec sleep 1000'}]`
	e := startReloading(t, ``, `{}`, worker)
	if out, stderr, code := e.ctl("validate"); code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("validate: exit %d %s%s", code, out, stderr)
	}
	e.mustDeploy("v1")
	testutil.Eventually(t, "the worker's line", func() bool {
		out, _, _ := e.ctl("logs", "--process", "worker")
		return strings.Contains(out, "[stdout] {{json .State}} {{ v1\n")
	})
}

// A proxied process that crashes while its release starts is restarted
// by its restart policy within the health check's window, as in the Node
// original: an app that fails its first boot still gets deployed.
func TestE2EProxiedCrashDuringStartupIsRestarted(t *testing.T) {
	// Exits 1 on its first run in each release directory only.
	const firstBootFails = `{restartDelayMs: 50, command: 'test -e booted || { touch booted; echo first boot fails; exit 1; }; ' + super.command}`
	for _, tc := range []struct{ name, web string }{
		{"health check", firstBootFails},
		{"health false", `{health: false} + ` + firstBootFails},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startReloading(t, ``, tc.web, `[]`)
			if _, stderr, code := e.deploy("v1", nil); code != 0 {
				t.Fatalf("deploy: exit %d %s", code, stderr)
			}
			testutil.Eventually(t, "v1 serving", func() bool { return e.get("/") == "v1" })
			web := e.status().Releases[0].Processes[0]
			if web.ID != "web" || web.Restarts != 1 || web.State != "running" {
				t.Errorf("web after the deploy: %+v, want running after 1 restart", web)
			}
		})
	}
	// A policy that gives up fails the deploy at once, naming why.
	e := startReloading(t, ``, `{restart: {maxRestarts: 0}, health+: {timeoutMs: 3600000}, command: 'echo no luck; exit 4'}`, `[]`)
	if _, stderr, code := e.deploy("v1", nil); code != exitFailed || !strings.Contains(stderr, "process web exited (exit code 4) before its health check") ||
		!strings.Contains(stderr, "restarts it no more") {
		t.Errorf("deploy with a web that gives up: exit %d %s", code, stderr)
	}
}
