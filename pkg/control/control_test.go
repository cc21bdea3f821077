package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/events"
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

func startServer(t testing.TB, h Handler) (*Server, string, *events.Log) {
	t.Helper()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	log := events.New(100)
	srv := NewServer(h, log)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close(time.Second)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, path, log
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

func echoHandler() Handler {
	return HandlerFunc(func(ctx context.Context, req *Request, progress func(Progress)) (any, error) {
		switch req.Command {
		case CmdDeploy:
			progress(Progress{Message: "starting", Data: map[string]any{"releaseId": req.ReleaseID}})
			return map[string]any{"activeReleaseId": req.ReleaseID, "previousReleaseId": nil}, nil
		case CmdStop:
			return nil, Errorf(CodeNotFound, "release %q is not retained", req.ReleaseID)
		case CmdEvents:
			return map[string]any{"limit": req.Limit}, nil
		}
		return struct{}{}, nil
	})
}

func TestRoundTripWithProgress(t *testing.T) {
	_, path, _ := startServer(t, echoHandler())
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
	// An empty result object is still a success line.
	if raw, err := c.Do(context.Background(), &Request{Command: CmdStatus}, nil); err != nil || string(raw) != `{"status":"success"}`+"\n" {
		t.Errorf("empty result: %s %v", raw, err)
	}
}

func TestErrorCodesCrossTheSocket(t *testing.T) {
	_, path, log := startServer(t, echoHandler())
	c := &Client{Path: path}
	_, err := c.Do(context.Background(), &Request{Command: CmdStop, ReleaseID: "v9"}, nil)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"v9" is not retained`) {
		t.Errorf("got %v, want ErrNotFound with the message", err)
	}
	if errors.Is(err, ErrConflict) {
		t.Errorf("error matches the wrong code")
	}
	evs := log.Recent(0)
	if len(evs) != 1 || evs[0].Message != "command failed" || evs[0].Data["command"] != "stop" {
		t.Errorf("events = %+v", evs)
	}
}

func TestBadInputGetsErrorAndServerKeepsServing(t *testing.T) {
	_, path, log := startServer(t, echoHandler())
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
		{`{"command":"status","releaseId":"x"}`, CodeBadRequest, `status does not take field "releaseId"`},
		{`{"command":"events","limit":"3"}`, CodeBadRequest, `"limit" must be a non-negative integer`},
		{`{"command":"events","limit":-1}`, CodeBadRequest, `"limit" must be a non-negative integer`},
		{`{"command":"restart","process":"a","policy":"service"}`, CodeBadRequest, "not both"},
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
	if last := answers[len(cases)]; last["status"] != "success" || last["limit"] != float64(3) {
		t.Errorf("valid request after bad ones: %v", last)
	}
	if n := len(log.Recent(0)); n != len(cases) {
		t.Errorf("%d command failed events, want %d", n, len(cases))
	}
}

func TestOverlongLine(t *testing.T) {
	_, path, _ := startServer(t, echoHandler())
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
	// A fresh connection still works.
	if err := (&Client{Path: path}).Call(context.Background(), &Request{Command: CmdStatus}, nil); err != nil {
		t.Errorf("status after an over-long line: %v", err)
	}
}

func TestClientDisconnectDoesNotCancelHandler(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	finished := make(chan error, 1)
	h := HandlerFunc(func(ctx context.Context, req *Request, progress func(Progress)) (any, error) {
		close(started)
		<-release
		progress(Progress{Message: "still going"}) // the client is gone: must not block or panic
		finished <- ctx.Err()
		return nil, nil
	})
	_, path, _ := startServer(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := (&Client{Path: path}).Do(ctx, &Request{Command: CmdDeploy, ReleasePath: "/x"}, nil)
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
	_, err := (&Client{Path: path}).Do(context.Background(), &Request{Command: CmdStatus}, nil)
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
	_, err = (&Client{Path: path}).Do(context.Background(), &Request{Command: CmdStatus}, nil)
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("stale socket: %v", err)
	}
}

func TestCloseWaitsForRequestsInProgress(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, req *Request, progress func(Progress)) (any, error) {
		close(started)
		<-release
		return map[string]string{"message": "shutdown"}, nil
	})
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
	res := make(chan json.RawMessage, 1)
	go func() {
		raw, _ := (&Client{Path: path}).Do(context.Background(), &Request{Command: CmdShutdown}, nil)
		res <- raw
	}()
	<-started
	closed := make(chan struct{})
	go func() { srv.Close(5 * time.Second); close(closed) }()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-closed:
			t.Errorf("Close returned while a request was in progress")
		case <-time.After(100 * time.Millisecond):
		}
	}()
	wg.Wait()
	close(release)
	if raw := <-res; !strings.Contains(string(raw), `"message":"shutdown"`) {
		t.Errorf("in-progress request lost its answer: %s", raw)
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
		{`{"command":"deploy","releasePath":"/r","releaseId":"v1","revision":"abc"}`, Request{Command: "deploy", ReleasePath: "/r", ReleaseID: "v1", Revision: "abc"}},
		{`{"command":"rollback"}`, Request{Command: "rollback"}},
		{`{"command":"rollback","releaseId":"v1"}`, Request{Command: "rollback", ReleaseID: "v1"}},
		{`{"command":"stop","releaseId":"v1"}`, Request{Command: "stop", ReleaseID: "v1"}},
		{`{"command":"restart","policy":"service"}`, Request{Command: "restart", Policy: "service"}},
		{`{"command":"logs","process":"web"}`, Request{Command: "logs", Process: "web"}},
		{`{"command":"events","limit":20}`, Request{Command: "events", Limit: 20}},
		{` {"command":"shutdown"} `, Request{Command: "shutdown"}},
	} {
		got, err := DecodeRequest([]byte(tc.in))
		if err != nil || *got != tc.want {
			t.Errorf("DecodeRequest(%s) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
