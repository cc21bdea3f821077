package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// socketPath returns a short Unix socket path (sun_path is 108 bytes).
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// failure is one call of the server's failed hook.
type failure struct {
	command string
	err     *Error
}

// failures collects what the server reports through its failed hook.
type failures struct {
	mu   sync.Mutex
	list []failure
}

func (f *failures) add(command string, err *Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, failure{command, err})
}

func (f *failures) get() []failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]failure(nil), f.list...)
}

func startServer(t testing.TB, h Handler) (*Server, string, *failures) {
	t.Helper()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	fails := &failures{}
	srv := NewServer(h, fails.add)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close(time.Second)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, path, fails
}

// rawExchange writes lines and reads one answer line per written line.
func rawExchange(t *testing.T, path string, lines ...string) []map[string]any {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	var out []map[string]any
	for _, l := range lines {
		if _, err := conn.Write([]byte(l + "\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("reading answer to %q: %v", l, err)
		}
		var m map[string]any
		if err := json.Unmarshal(resp, &m); err != nil {
			t.Fatalf("answer %q is not JSON: %v", resp, err)
		}
		out = append(out, m)
	}
	return out
}

// echo is a Handler that answers from its request: deploy reports one
// progress line and activates the requested id, stop refuses with
// not_found, events returns limit events, the rest return empty results.
type echo struct{}

func (echo) Deploy(_ context.Context, req DeployRequest, progress func(Progress)) (DeployResult, error) {
	progress(Progress{Message: "starting", Data: map[string]any{"releaseId": req.ReleaseID}})
	return DeployResult{ActiveReleaseID: req.ReleaseID}, nil
}

func (echo) Rollback(context.Context, RollbackRequest, func(Progress)) (DeployResult, error) {
	return DeployResult{}, nil
}

func (echo) Status(context.Context) (Status, error) { return Status{Application: "echo"}, nil }

func (echo) Stop(_ context.Context, req StopRequest) (Status, error) {
	return Status{}, Errorf(CodeNotFound, "release %q is not retained", req.ReleaseID)
}

func (echo) Restart(context.Context, RestartRequest) (RestartResult, error) {
	return RestartResult{}, nil
}

func (echo) Logs(context.Context, LogsRequest) (LogsResult, error) { return LogsResult{}, nil }

func (echo) Events(_ context.Context, req EventsRequest) (EventsResult, error) {
	return EventsResult{Events: make([]Event, req.Limit)}, nil
}

func (echo) Shutdown(context.Context) (ShutdownResult, error) {
	return ShutdownResult{Message: "shutdown"}, nil
}

func (echo) DeployCanary(_ context.Context, req DeployCanaryRequest, _ func(Progress)) (CanaryResult, error) {
	return CanaryResult{ActiveReleaseID: "v1", CanaryReleaseID: &req.ReleaseID, Percent: req.Percent}, nil
}

func (echo) RolloutSet(_ context.Context, req RolloutSetRequest) (CanaryResult, error) {
	return CanaryResult{Percent: req.Percent}, nil
}

func (echo) RolloutPromote(context.Context, func(Progress)) (CanaryResult, error) {
	return CanaryResult{}, nil
}

func (echo) RolloutAbort(context.Context) (CanaryResult, error) { return CanaryResult{}, nil }

func (echo) DrainHost(_ context.Context, req DrainHostRequest, progress func(Progress)) (HostResult, error) {
	if req.Wait {
		progress(Progress{Message: "waiting", Data: map[string]any{"quietMs": req.Quiet.Milliseconds()}})
		return HostResult{Drained: true, Changed: true, HealthPath: "/lb", QuietMs: req.Quiet.Milliseconds()}, nil
	}
	return HostResult{Drained: true, Changed: true, HealthPath: "/lb"}, nil
}

func (echo) UndrainHost(context.Context) (HostResult, error) {
	return HostResult{Healthy: true, Changed: true, HealthPath: "/lb"}, nil
}

func (echo) Pause(_ context.Context, req PauseRequest) (TrafficResult, error) {
	return TrafficResult{Paused: true, Drained: req.Drain, Held: int(req.TimeoutMs)}, nil
}

func (echo) Resume(context.Context) (TrafficResult, error) { return TrafficResult{}, nil }

func (echo) Maintenance(_ context.Context, req MaintenanceRequest) (TrafficResult, error) {
	if !req.On {
		return TrafficResult{}, nil
	}
	return TrafficResult{Maintenance: &MaintenanceInfo{Message: req.Message, Page: req.Page != ""}}, nil
}

func TestRoundTripWithProgress(t *testing.T) {
	_, path, _ := startServer(t, echo{})
	c := &Client{Path: path}
	var got []Progress
	raw, err := c.Do(context.Background(), &Request{Command: CmdDeploy, ReleasePath: "/srv/r1", ReleaseID: "v1"}, func(p Progress) { got = append(got, p) })
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	if res["status"] != "success" || res["activeReleaseId"] != "v1" {
		t.Errorf("got %s", raw)
	}
	if _, ok := res["previousReleaseId"]; !ok {
		t.Errorf("null field dropped: %s", raw)
	}
	if len(got) != 1 || got[0].Message != "starting" || got[0].Data["releaseId"] != "v1" {
		t.Errorf("progress = %+v", got)
	}
	// The typed methods decode the same lines.
	got = nil
	res2, err := c.Deploy(context.Background(), DeployRequest{ReleasePath: "/srv/r2", ReleaseID: "v2"}, func(p Progress) { got = append(got, p) })
	if err != nil || res2.ActiveReleaseID != "v2" || res2.PreviousReleaseID != nil || len(got) != 1 {
		t.Errorf("typed deploy: %+v %v, progress %+v", res2, err, got)
	}
	if st, err := c.Status(context.Background()); err != nil || st.Application != "echo" {
		t.Errorf("typed status: %+v %v", st, err)
	}
	if ev, err := c.Events(context.Background(), EventsRequest{Limit: 2}); err != nil || len(ev.Events) != 2 {
		t.Errorf("typed events: %+v %v", ev, err)
	}
}

// TestOneLinePerRequestUnlessProgressAsked: as with the original, every
// request line gets exactly one line back, so a client that reads the
// first line gets the answer; only a deploy or rollback that asks with
// "progress":true gets progress lines first.
func TestOneLinePerRequestUnlessProgressAsked(t *testing.T) {
	_, path, _ := startServer(t, echo{})
	answers := rawExchange(t, path,
		`{"command":"deploy","releasePath":"/srv/r1","releaseId":"v1"}`,
		`{"command":"rollback"}`,
		`{"command":"status"}`,
		`{"command":"deploy","releasePath":"/srv/r2","releaseId":"v2","progress":false}`,
		`{"command":"deploy","releasePath":"/srv/r3","releaseId":"v3","progress":true}`,
		`{"command":"status"}`)
	for i, want := range []string{"v1", "", "echo", "v2"} {
		a := answers[i]
		if a["status"] != "success" || want != "echo" && a["activeReleaseId"] != want || want == "echo" && a["application"] != "echo" {
			t.Errorf("answer %d: %v, want the success line", i, a)
		}
	}
	// The progress line comes first, then the answer, then the next request's.
	if a := answers[4]; a["status"] != "progress" || a["message"] != "starting" {
		t.Errorf("asked for progress: first line %v", a)
	}
	if a := answers[5]; a["status"] != "success" || a["activeReleaseId"] != "v3" {
		t.Errorf("asked for progress: second line %v", a)
	}
}

// TestRequestFieldsReachTheHandler: restart's processId (and our old name
// process) and policy arrive together; logs takes processId too.
func TestRequestFieldsReachTheHandler(t *testing.T) {
	h := &recording{}
	_, path, _ := startServer(t, h)
	rawExchange(t, path,
		`{"command":"restart","processId":"worker#1","policy":"companion"}`,
		`{"command":"restart","process":"beacon"}`,
		`{"command":"logs","processId":"web"}`,
		`{"command":"events","limit":2}`)
	want := []string{"restart worker#1 companion", "restart beacon ", "logs web", "events 2"}
	if got := h.get(); !slices.Equal(got, want) {
		t.Errorf("handler saw %q, want %q", got, want)
	}
	// The typed client sends the original's names.
	c := &Client{Path: path}
	if _, err := c.Restart(context.Background(), RestartRequest{ProcessID: "cron", Policy: "singleton"}); err != nil {
		t.Fatal(err)
	}
	if got := h.get(); got[len(got)-1] != "restart cron singleton" {
		t.Errorf("typed restart arrived as %q", got[len(got)-1])
	}
}

// recording is echo that records what restart, logs and events were asked.
type recording struct {
	echo
	mu   sync.Mutex
	seen []string
}

func (h *recording) note(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen = append(h.seen, s)
}

func (h *recording) get() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

func (h *recording) Restart(_ context.Context, req RestartRequest) (RestartResult, error) {
	h.note("restart " + req.ProcessID + " " + req.Policy)
	return RestartResult{Restarted: []string{}}, nil
}

func (h *recording) Logs(_ context.Context, req LogsRequest) (LogsResult, error) {
	h.note("logs " + req.ProcessID)
	return LogsResult{Processes: []ProcessLogs{}}, nil
}

func (h *recording) Events(_ context.Context, req EventsRequest) (EventsResult, error) {
	h.note("events " + strconv.Itoa(req.Limit))
	return EventsResult{Events: []Event{}}, nil
}

func TestErrorCodesCrossTheSocket(t *testing.T) {
	_, path, fails := startServer(t, echo{})
	c := &Client{Path: path}
	_, err := c.Stop(context.Background(), StopRequest{ReleaseID: "v9"})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"v9" is not retained`) {
		t.Errorf("got %v, want ErrNotFound with the message", err)
	}
	if errors.Is(err, ErrConflict) {
		t.Errorf("error matches the wrong code")
	}
	// The handler's own errors are the handler's to record, so the same
	// failure is never reported twice.
	if f := fails.get(); len(f) != 0 {
		t.Errorf("handler error reported by the server: %+v", f)
	}
}

func TestBadInputGetsErrorAndServerKeepsServing(t *testing.T) {
	_, path, fails := startServer(t, echo{})
	cases := []struct{ in, code, want string }{
		{`{"command":`, CodeBadRequest, "malformed JSON"},
		{`not json`, CodeBadRequest, "must be a JSON object"},
		{`[1,2]`, CodeBadRequest, "must be a JSON object"},
		{`"status"`, CodeBadRequest, "must be a JSON object"},
		{`null`, CodeBadRequest, "must be a JSON object"},
		{`{}`, CodeBadRequest, `no "command"`},
		{`{"command":5}`, CodeBadRequest, `"command" must be a string`},
		{`{"command":"explode"}`, CodeUnknownCommand, `unknown command "explode"`},
		{`{"command":"deploy"}`, CodeBadRequest, `deploy needs "releasePath"`},
		{`{"command":"deploy","releasePath":7}`, CodeBadRequest, `"releasePath" must be a string`},
		{`{"command":"deploy","releasePath":""}`, CodeBadRequest, `deploy needs "releasePath"`},
		{`{"command":"deploy","releasePath":null}`, CodeBadRequest, `deploy needs "releasePath"`},
		{`{"command":"deploy","releasePath":"/r","progress":"yes"}`, CodeBadRequest, `"progress" must be true or false`},
		{`{"command":"restart","processId":["a"]}`, CodeBadRequest, `"processId" must be a string`},
		{`{"command":"restart","process":1}`, CodeBadRequest, `"process" must be a string`},
		{`{"command":"stop","releaseId":{}}`, CodeBadRequest, `"releaseId" must be a string`},
		{`   `, CodeBadRequest, "empty request"},
	}
	lines := make([]string, 0, len(cases)+1)
	for _, tc := range cases {
		lines = append(lines, tc.in)
	}
	lines = append(lines, `{"command":"events","limit":3}`)
	answers := rawExchange(t, path, lines...) // all on one connection: it stays usable
	for i, tc := range cases {
		a := answers[i]
		if a["status"] != "error" || a["code"] != tc.code || !strings.Contains(a["error"].(string), tc.want) {
			t.Errorf("%q: got %v, want code %s and %q", tc.in, a, tc.code, tc.want)
		}
	}
	if last := answers[len(cases)]; last["status"] != "success" || len(last["events"].([]any)) != 3 {
		t.Errorf("valid request after bad ones: %v", last)
	}
	// Every refusal is reported once, without a command (none decoded).
	f := fails.get()
	if len(f) != len(cases) {
		t.Fatalf("%d failures reported, want %d", len(f), len(cases))
	}
	for i, tc := range cases {
		if f[i].command != "" || f[i].err.Code != tc.code {
			t.Errorf("%q reported as %+v", tc.in, f[i])
		}
	}
}

func TestOverlongLine(t *testing.T) {
	_, path, fails := startServer(t, echo{})
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() {
		big := `{"command":"deploy","releasePath":"` + strings.Repeat("a", MaxLineBytes+10) + "\"}\n"
		_, _ = conn.Write([]byte(big)) // the server may close before reading it all
	}()
	resp, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatalf("no answer to an over-long line: %v", err)
	}
	if !strings.Contains(string(resp), "longer than") {
		t.Errorf("got %s", resp)
	}
	if f := fails.get(); len(f) != 1 || f[0].err.Code != CodeBadRequest {
		t.Errorf("over-long line reported as %+v", f)
	}
	// A fresh connection still works.
	if _, err := (&Client{Path: path}).Status(context.Background()); err != nil {
		t.Errorf("status after an over-long line: %v", err)
	}
}

func TestClientDisconnectDoesNotCancelHandler(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	finished := make(chan error, 1)
	h := slowDeploy{run: func(ctx context.Context, progress func(Progress)) {
		close(started)
		<-release
		progress(Progress{Message: "still going"}) // the client is gone: must not block or panic
		finished <- ctx.Err()
	}}
	_, path, _ := startServer(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := (&Client{Path: path}).Deploy(ctx, DeployRequest{ReleasePath: "/x"}, nil)
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
	close(release)
	if err := <-finished; err != nil {
		t.Errorf("handler ctx ended when the client left: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	path := socketPath(t)
	_, err := (&Client{Path: path}).Status(context.Background())
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "is rollbridged running?") {
		t.Errorf("missing socket: %v", err)
	}
	// A socket file with nobody listening.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	_, err = (&Client{Path: path}).Status(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("stale socket: %v", err)
	}
	if (&Client{Path: path}).Listening(context.Background()) {
		t.Error("a socket file with nobody behind it counts as listening")
	}
}

func TestCloseWaitsForRequestsInProgress(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := slowShutdown{started: started, release: release}
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// An idle connection must not hold Close up.
	idle, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	res := make(chan string, 1)
	go func() {
		r, _ := (&Client{Path: path}).Shutdown(context.Background())
		res <- r.Message
	}()
	<-started
	closed := make(chan struct{})
	go func() { srv.Close(5 * time.Second); close(closed) }()
	// Close has begun once it hung up the idle connection.
	if err := idle.SetReadDeadline(time.Now().Add(testutil.Timeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := idle.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Close did not hang up an idle connection within %v", testutil.Timeout)
	}
	// The window is what is tested, not a wait for something: Close must
	// not return in it while the request runs.
	select {
	case <-closed:
		t.Errorf("Close returned while a request was in progress")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if msg := <-res; msg != "shutdown" {
		t.Errorf("in-progress request lost its answer: %q", msg)
	}
	<-closed
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestDecodeRequestFieldsPerCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Request
	}{
		// The original's names, as its client sends them.
		{`{"command":"restart","processId":"worker#1"}`, Request{Command: "restart", ProcessID: "worker#1"}},
		{`{"command":"restart","processId":"worker","policy":"companion"}`, Request{Command: "restart", ProcessID: "worker", Policy: "companion"}},
		{`{"command":"restart","process":"worker"}`, Request{Command: "restart", ProcessID: "worker"}},
		{`{"command":"restart","processId":"a","process":"b"}`, Request{Command: "restart", ProcessID: "a"}},
		{`{"command":"restart","process":"b","processId":"a"}`, Request{Command: "restart", ProcessID: "a"}},
		{`{"command":"logs","processId":"web"}`, Request{Command: "logs", ProcessID: "web"}},
		// Fields a command does not read are ignored, whatever their type;
		// null is absent.
		{`{"command":"status","releaseId":"x","verbose":[1]}`, Request{Command: "status"}},
		{`{"command":"stop","releaseId":null,"force":true}`, Request{Command: "stop"}},
		{`{"command":"deploy","releasePath":"/r","processId":5,"revision":null}`, Request{Command: "deploy", ReleasePath: "/r"}},
		{`{"command":"deploy","releasePath":"/r","progress":true}`, Request{Command: "deploy", ReleasePath: "/r", Progress: true}},
		{`{"command":"status","progress":true}`, Request{Command: "status"}},
		// limit as the original reads it: not positive means all, a
		// fraction rounds up.
		{`{"command":"events","limit":-1}`, Request{Command: "events"}},
		{`{"command":"events","limit":0}`, Request{Command: "events"}},
		{`{"command":"events","limit":2.5}`, Request{Command: "events", Limit: 3}},
		{`{"command":"events","limit":1e300}`, Request{Command: "events"}},
		{`{"command":"events","limit":null}`, Request{Command: "events"}},
		// Anything but a number is ignored, as the original ignores it.
		{`{"command":"events","limit":"3"}`, Request{Command: "events"}},
		{`{"command":"events","limit":true}`, Request{Command: "events"}},
		{`{"command":"events","limit":{"n":2}}`, Request{Command: "events"}},
		{`{"command":"events","limit":1e400}`, Request{Command: "events"}},
		{`{"command":"deploy","releasePath":"/r","releaseId":"v1","revision":"abc"}`, Request{Command: "deploy", ReleasePath: "/r", ReleaseID: "v1", Revision: "abc"}},
		{`{"command":"rollback"}`, Request{Command: "rollback"}},
		{`{"command":"rollback","releaseId":"v1"}`, Request{Command: "rollback", ReleaseID: "v1"}},
		{`{"command":"stop","releaseId":"v1"}`, Request{Command: "stop", ReleaseID: "v1"}},
		{`{"command":"restart","policy":"service"}`, Request{Command: "restart", Policy: "service"}},
		{`{"command":"logs","process":"web"}`, Request{Command: "logs", ProcessID: "web"}},
		{`{"command":"events","limit":20}`, Request{Command: "events", Limit: 20}},
		{` {"command":"shutdown"} `, Request{Command: "shutdown"}},
	} {
		got, err := DecodeRequest([]byte(tc.in))
		if err != nil || *got != tc.want {
			t.Errorf("DecodeRequest(%s) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// slowDeploy is echo with a deploy that runs run.
type slowDeploy struct {
	echo
	run func(ctx context.Context, progress func(Progress))
}

func (h slowDeploy) Deploy(ctx context.Context, _ DeployRequest, progress func(Progress)) (DeployResult, error) {
	h.run(ctx, progress)
	return DeployResult{}, nil
}

// slowShutdown is echo with a shutdown that waits for release.
type slowShutdown struct {
	echo
	started, release chan struct{}
}

func (h slowShutdown) Shutdown(context.Context) (ShutdownResult, error) {
	close(h.started)
	<-h.release
	return ShutdownResult{Message: "shutdown"}, nil
}

// A Client with Dial speaks the protocol over whatever Dial returns (here
// a plain connection to the server's socket, as dial-stdio's would be);
// Path only names the daemon, and Dial's errors come back as they are.
func TestClientDialSeam(t *testing.T) {
	_, path, _ := startServer(t, echo{})
	dials := 0
	c := &Client{Path: "ssh://deploy@web1", Dial: func(ctx context.Context) (io.ReadWriteCloser, error) {
		dials++
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	var progress []Progress
	res, err := c.DrainHost(context.Background(), DrainHostRequest{Wait: true, Quiet: 1500 * time.Millisecond}, func(p Progress) { progress = append(progress, p) })
	if err != nil {
		t.Fatal(err)
	}
	if dials != 1 || !res.Drained || res.QuietMs != 1500 || len(progress) != 1 {
		t.Fatalf("got dials=%d %+v progress=%v, want one dial, a drained answer with quietMs 1500 and one progress line", dials, res, progress)
	}
	if _, err := c.UndrainHost(context.Background()); err != nil {
		t.Fatal(err)
	}

	sshFailed := fmt.Errorf("ssh to deploy@web1 failed: %w", ErrUnreachable)
	c.Dial = func(context.Context) (io.ReadWriteCloser, error) { return nil, sshFailed }
	if _, err := c.Status(context.Background()); err != sshFailed { // the very error, unwrapped
		t.Fatalf("got %v, want Dial's error as it is", err)
	}
}
