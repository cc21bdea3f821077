package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// The compatibility test drives a real rollbridged with the request lines
// the Node original's CLI (rollbridge 0.1.7) sends, the way its client
// sends them: one line, then the first line of the answer is the answer
// and the socket is ended. It checks the answers against the original's
// shapes: which keys are there and which are left out, their types, the
// original's key order and the order of the releases.

// nodeAsk is the original's sendControlCommand: write one line, read up
// to the first newline, hang up. It returns that line.
func nodeAsk(t *testing.T, sock, line string) []byte {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testutil.Timeout))
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		t.Fatal(err)
	}
	answer, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatalf("%s: no answer line: %v", line, err)
	}
	return bytes.TrimSuffix(answer, []byte("\n"))
}

// obj is a decoded JSON object that remembers its key order.
type obj struct {
	keys []string
	m    map[string]json.RawMessage
}

func decodeObj(t *testing.T, b []byte) obj {
	t.Helper()
	o := obj{m: map[string]json.RawMessage{}}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", b)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		o.keys = append(o.keys, tok.(string))
		o.m[tok.(string)] = v
	}
	return o
}

func (o obj) has(k string) bool { _, ok := o.m[k]; return ok }

func (o obj) obj(t *testing.T, k string) obj {
	t.Helper()
	if !o.has(k) {
		t.Fatalf("no %q in %v", k, o.keys)
	}
	return decodeObj(t, o.m[k])
}

func (o obj) list(t *testing.T, k string) []obj {
	t.Helper()
	var raw []json.RawMessage
	if err := json.Unmarshal(o.m[k], &raw); err != nil || raw == nil {
		t.Fatalf("%q is not an array: %s", k, o.m[k])
	}
	out := make([]obj, len(raw))
	for i, r := range raw {
		out[i] = decodeObj(t, r)
	}
	return out
}

func (o obj) str(k string) string {
	var s string
	_ = json.Unmarshal(o.m[k], &s)
	return s
}

// wantKeys checks that o has the spec's keys in the spec's order (ours may
// follow: extra lists the extensions allowed after them) and none of gone.
func (o obj) wantKeys(t *testing.T, what string, spec, extra, gone []string) {
	t.Helper()
	n := min(len(spec), len(o.keys))
	if !slices.Equal(o.keys[:n], spec) {
		t.Errorf("%s: keys %v, want the spec's %v first", what, o.keys, spec)
	}
	for _, k := range o.keys[n:] {
		if !slices.Contains(extra, k) {
			t.Errorf("%s: unexpected key %q (keys %v)", what, k, o.keys)
		}
	}
	for _, k := range gone {
		if o.has(k) {
			t.Errorf("%s: has %q = %s; the spec leaves it out here", what, k, o.m[k])
		}
	}
}

// isoMillis is JavaScript's Date.toISOString, the spec's every timestamp.
var isoMillis = regexp.MustCompile(`^"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"$`)

func (o obj) wantTime(t *testing.T, what, k string) {
	t.Helper()
	if !isoMillis.Match(o.m[k]) {
		t.Errorf("%s: %s = %s, want an ISO time with milliseconds", what, k, o.m[k])
	}
}

func (o obj) wantRaw(t *testing.T, what, k, want string) {
	t.Helper()
	if got := string(o.m[k]); got != want {
		t.Errorf("%s: %s = %s, want %s", what, k, got, want)
	}
}

var (
	statusKeys  = []string{"status", "activeReleaseId", "application", "control", "orphans", "proxy", "releases", "services", "singletons"}
	releaseKeys = []string{"activatedAt", "connectionCount", "connections", "drainStartedAt", "ports", "processes", "releaseId",
		"releasePath", "revision", "state", "stoppedAt"}
	processKeys = []string{"children", "command", "cwd", "exitCode", "exitSignal", "id", "lastMemoryRestartAt", "lastStartReason",
		"logs", "memoryRestarts", "pid", "restarts", "rssBytes", "startedAt", "state", "uptimeMs"}
	ourReleaseKeys = []string{"createdAt", "requests", "error"}
	ourProcessKeys = []string{"policy", "port"}
)

// present is keys without the ones in absent, in order.
func present(keys []string, absent ...string) []string {
	return slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return slices.Contains(absent, k) })
}

func compatFixture(t *testing.T) *fixture {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe, _ := os.Executable()
	from := 30000 + rand.IntN(25)*100 // this package's band: 30000-32499 (see pkg/supervisor portRange)
	ports := fmt.Sprintf("{from: %d, to: %d}", from, from+99)
	src := fmt.Sprintf(`{application: 'compat', control: {path: %q, mode: '660'}, proxy: {port: 0, drainTimeoutMs: 0},
	  processes: [
	    {id: 'web', policy: 'proxied', command: 'PORT={{port}} RB_TESTAPP=1 exec %s', port: %s, health: {intervalMs: 20}},
	    {id: 'worker', policy: 'companion', replicas: 2, command: 'echo worker {{replicaIndex}} up; exec sleep 1000'},
	    {id: 'once', policy: 'companion', command: 'echo done', restartDelayMs: 3600000},
	    {id: 'beacon', policy: 'service', command: 'exec sleep 1000', port: %s},
	    {id: 'scheduler', policy: 'singleton', command: 'exec sleep 1000', port: %s},
	  ]}`, filepath.Join(dir, "c.sock"), exe, ports, ports, ports)
	cfg := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"r1", "r2"} {
		if err := os.Mkdir(filepath.Join(dir, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{t: t, dir: dir, cfg: cfg, sock: filepath.Join(dir, "c.sock")}
}

func TestNodeClientCompatibility(t *testing.T) {
	f := compatFixture(t)
	f.start(nil, "")
	f.waitReady()
	ask := func(line string) obj { t.Helper(); return decodeObj(t, nodeAsk(t, f.sock, line)) }
	// exact compares the whole first line: no progress line comes first.
	exact := func(line, want string) {
		t.Helper()
		if got := string(nodeAsk(t, f.sock, line)); got != want {
			t.Errorf("%s\n got %s\nwant %s", line, got, want)
		}
	}

	// A fresh daemon.
	st := ask(`{"command":"status"}`)
	st.wantKeys(t, "status", statusKeys, []string{"daemon"}, nil)
	st.wantRaw(t, "status", "activeReleaseId", "null")
	st.wantRaw(t, "status", "control", fmt.Sprintf(`{"mode":432,"path":%q}`, f.sock)) // "660" as the number
	for _, k := range []string{"orphans", "releases", "services", "singletons"} {
		st.wantRaw(t, "status", k, "[]")
	}
	px := st.obj(t, "proxy")
	px.wantKeys(t, "proxy", []string{"host", "port", "upstreamHost"}, []string{"held", "holdGaveUp", "paused", "maintenance", "hostDrained", "eventLoop"}, []string{"hostDrainedSince"})
	px.wantRaw(t, "proxy", "hostDrained", "false")

	// deploy, as `rollbridge deploy --release-path DIR [--release-id ID] [--revision R]` sends it.
	exact(fmt.Sprintf(`{"command":"deploy","releaseId":"v1","releasePath":%q}`, filepath.Join(f.dir, "r1")),
		`{"status":"success","activeReleaseId":"v1","previousReleaseId":null}`)
	exact(fmt.Sprintf(`{"command":"deploy","releaseId":"v2","releasePath":%q,"revision":"abc123"}`, filepath.Join(f.dir, "r2")),
		`{"status":"success","activeReleaseId":"v2","previousReleaseId":"v1"}`)

	var releases []obj
	testutil.Eventually(t, "v1 stopped and the once companion exited", func() bool {
		st = ask(`{"command":"status"}`)
		releases = st.list(t, "releases")
		if len(releases) != 2 || releases[0].str("state") != "stopped" {
			return false
		}
		for _, p := range releases[1].list(t, "processes") {
			if p.str("id") == "once" && p.str("state") == "failed" {
				return true
			}
		}
		return false
	})
	st.wantKeys(t, "status", statusKeys, []string{"daemon"}, nil)
	st.wantRaw(t, "status", "activeReleaseId", `"v2"`)
	v1, v2 := releases[0], releases[1]
	if v1.str("releaseId") != "v1" || v2.str("releaseId") != "v2" {
		t.Errorf("releases %s, %s: want v1 then v2 (oldest first)", v1.m["releaseId"], v2.m["releaseId"])
	}
	v1.wantKeys(t, "stopped release", releaseKeys, ourReleaseKeys, nil)
	v2.wantKeys(t, "active release", present(releaseKeys, "drainStartedAt", "stoppedAt"), ourReleaseKeys, []string{"error"})
	v1.wantRaw(t, "v1", "revision", `"v1"`) // no revision given: the id
	v2.wantRaw(t, "v2", "revision", `"abc123"`)
	v2.wantRaw(t, "v2", "releasePath", fmt.Sprintf("%q", filepath.Join(f.dir, "r2")))
	for _, k := range []string{"activatedAt", "drainStartedAt", "stoppedAt"} {
		v1.wantTime(t, "v1", k)
	}
	v2.wantTime(t, "v2", "activatedAt")
	v2.obj(t, "connections").wantKeys(t, "connections", []string{"http", "websocket"}, nil, nil)
	if ports := v2.obj(t, "ports"); !slices.Equal(ports.keys, []string{"web", "beacon", "scheduler"}) {
		t.Errorf("v2 ports %v, want every allocated port in config order: web, beacon, scheduler", ports.keys)
	}

	procs := map[string]obj{}
	var ids []string
	for _, p := range v2.list(t, "processes") {
		ids = append(ids, p.str("id"))
		procs[p.str("id")] = p
	}
	if want := []string{"worker#0", "worker#1", "once", "web"}; !slices.Equal(ids, want) {
		t.Errorf("v2 processes %v, want %v (companions, then the proxied one)", ids, want)
	}
	web := procs["web"]
	web.wantKeys(t, "running process", present(processKeys, "exitCode", "exitSignal", "lastMemoryRestartAt", "rssBytes"), ourProcessKeys, nil)
	web.wantRaw(t, "web", "lastStartReason", `"deploy"`)
	web.wantRaw(t, "web", "children", "[]")
	web.wantTime(t, "web", "startedAt")
	// An exit nobody asked for, with code 0: failed, as the spec reports it.
	once := procs["once"]
	once.wantKeys(t, "exited process", present(processKeys, "lastMemoryRestartAt", "pid", "rssBytes", "uptimeMs"), ourProcessKeys, nil)
	once.wantRaw(t, "once", "exitCode", "0")
	once.wantRaw(t, "once", "exitSignal", "null")
	stopped := v1.list(t, "processes")
	for _, p := range stopped {
		p.wantKeys(t, "stopped process "+p.str("id"), present(processKeys, "lastMemoryRestartAt", "pid", "rssBytes", "uptimeMs"), ourProcessKeys, nil)
		if p.str("state") != "stopped" || (string(p.m["exitCode"]) == "null") == (string(p.m["exitSignal"]) == "null") {
			t.Errorf("stopped process %s: state %s, exitCode %s, exitSignal %s: want stopped and exactly one null",
				p.str("id"), p.m["state"], p.m["exitCode"], p.m["exitSignal"])
		}
		if logs := p.list(t, "logs"); len(logs) > 0 {
			logs[0].wantKeys(t, "log line", []string{"at", "line", "stream"}, nil, nil)
			logs[0].wantTime(t, "log line", "at")
		}
	}
	for _, k := range []string{"services", "singletons"} {
		units := st.list(t, k)
		if len(units) != 1 {
			t.Fatalf("%s: %d entries", k, len(units))
		}
		units[0].wantKeys(t, k, []string{"id", "process"}, []string{"releaseId"}, nil)
	}

	// events, as `rollbridge events [--limit N]` sends it.
	evs := ask(`{"command":"events","limit":3}`)
	evs.wantKeys(t, "events", []string{"status", "events"}, nil, nil)
	last3 := evs.list(t, "events")
	if len(last3) != 3 {
		t.Errorf("limit 3: %d events", len(last3))
	}
	for _, e := range last3 {
		e.wantKeys(t, "event", []string{"at", "data", "message"}, nil, nil)
		e.wantTime(t, "event", "at")
	}
	all := ask(`{"command":"events"}`).list(t, "events")
	find := func(message string, match func(obj) bool) obj {
		t.Helper()
		for _, e := range all {
			if e.str("message") == message && match(e.obj(t, "data")) {
				return e.obj(t, "data")
			}
		}
		t.Errorf("no %q event that matches", message)
		return obj{m: map[string]json.RawMessage{}}
	}
	any := func(obj) bool { return true }
	find("proxy listening", any).wantKeys(t, "proxy listening", []string{"host", "port"}, nil, nil)
	find("control socket listening", any).wantRaw(t, "control socket listening", "path", fmt.Sprintf("%q", f.sock))
	find("traffic switched", func(d obj) bool { return d.str("releaseId") == "v2" }).wantRaw(t, "traffic switched", "previousReleaseId", `"v1"`)
	starting := find("deploy starting", func(d obj) bool { return d.str("releaseId") == "v1" })
	if starting.has("revision") {
		t.Errorf("deploy starting without a revision: %s", starting.m["revision"])
	}
	started := find("process started", func(d obj) bool { return d.str("processId") == "worker#1" })
	started.wantRaw(t, "process started", "id", `"worker#1"`)
	started.wantRaw(t, "process started", "command", `"echo worker 1 up; exec sleep 1000"`)
	started.wantRaw(t, "process started", "reason", `"deploy"`)
	exited := find("process exited", func(d obj) bool { return d.str("processId") == "once" })
	exited.wantRaw(t, "process exited", "code", "0")
	exited.wantRaw(t, "process exited", "signal", "null")

	// restart, as `rollbridge restart [--process ID] [--policy P]` sends it.
	exact(`{"command":"restart","processId":"worker#1"}`, `{"status":"success","restarted":["worker#1"]}`)
	exact(`{"command":"restart","policy":"service"}`, `{"status":"success","restarted":["beacon"]}`)
	exact(`{"command":"restart","policy":"companion","processId":"worker"}`, `{"status":"success","restarted":["worker#0","worker#1"]}`)
	restarted := ask(`{"command":"events"}`).list(t, "events")
	n := 0
	for _, e := range restarted {
		if e.str("message") == "process restart requested" && e.obj(t, "data").str("processId") == "worker#1" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d process restart requested events for worker#1, want 2 (processId = the instance id)", n)
	}

	// Errors: {"error":"...","status":"error"} first, our code after.
	for _, line := range []string{`{"command":"restart","processId":"ghost"}`, `{"command":"explode"}`, `{"command":"deploy"}`, `not json`} {
		e := ask(line)
		e.wantKeys(t, line, []string{"error", "status"}, []string{"code"}, nil)
		e.wantRaw(t, line, "status", `"error"`)
		if e.str("error") == "" {
			t.Errorf("%s: no message: %v", line, e.m)
		}
	}
	// A field the daemon does not know is ignored.
	ask(`{"command":"status","verbose":true}`).wantRaw(t, "status with an extra field", "status", `"success"`)

	// The proxy's X-Forwarded-Port, as the original's proxy sets it.
	addr := strings.Trim(string(st.obj(t, "proxy").m["port"]), `"`)
	for _, tc := range []struct{ host, prior, want string }{
		{"shop.example", "", "X-Forwarded-Port: 80"},
		{"shop.example:8443", "", "X-Forwarded-Port: 8443"},
		{"shop.example", "443", "X-Forwarded-Port: 443,80"},
	} {
		req, err := http.NewRequest("GET", "http://127.0.0.1:"+addr+"/headers", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		if tc.prior != "" {
			req.Header.Set("X-Forwarded-Port", tc.prior)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !slices.Contains(strings.Split(strings.TrimSpace(string(body)), "\n"), tc.want) {
			t.Errorf("Host %s, X-Forwarded-Port %q: the app saw\n%s\nwant %s", tc.host, tc.prior, body, tc.want)
		}
	}

	// rollback, as `rollbridge rollback [--release-id ID]` sends it; v1
	// keeps its place in the list, as in the spec's release map.
	exact(`{"command":"rollback"}`, `{"status":"success","activeReleaseId":"v1","previousReleaseId":"v2"}`)
	var order []string
	for _, r := range ask(`{"command":"status"}`).list(t, "releases") {
		order = append(order, r.str("releaseId")+":"+r.str("state"))
	}
	if len(order) != 2 || order[0] != "v1:active" || !strings.HasPrefix(order[1], "v2:") {
		t.Errorf("releases after the rollback: %v, want v1 (active) still first", order)
	}

	// stop answers with the status.
	st = ask(`{"command":"stop"}`)
	st.wantKeys(t, "stop", statusKeys, []string{"daemon"}, nil)
	st.wantRaw(t, "stop", "activeReleaseId", "null")

	exact(`{"command":"shutdown"}`, `{"status":"success","message":"shutdown"}`)
}
