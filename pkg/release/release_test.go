package release

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
)

// listenAny holds an ephemeral port busy for the rest of the test.
func listenAny(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

func TestAllocateSkipsBusyAndReserved(t *testing.T) {
	_, busy := listenAny(t)
	// The range starts at the busy port; the next ports are very likely free.
	r := config.PortRange{From: busy, To: busy + 20}
	got, err := Allocate("127.0.0.1", []PortRequest{{"web", r}, {"beacon", r}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got["web"] == busy || got["beacon"] == busy || got["web"] == got["beacon"] {
		t.Errorf("got %v; busy port %d must be skipped and ports distinct", got, busy)
	}
	got2, err := Allocate("127.0.0.1", []PortRequest{{"web", r}}, map[int]bool{got["web"]: true})
	if err != nil || got2["web"] == got["web"] {
		t.Errorf("avoid set ignored: %v %v", got2, err)
	}
}

func TestAllocateExhaustedCounts(t *testing.T) {
	_, busy := listenAny(t)
	r := config.PortRange{From: busy, To: busy}
	_, err := Allocate("127.0.0.1", []PortRequest{{"web", r}}, nil)
	var pe *PortError
	if !errors.As(err, &pe) || pe.InUse != 1 || pe.Reserved != 0 {
		t.Fatalf("got %v (%+v)", err, pe)
	}
	want := "in range " + r.String() + "-" + r.String() + " (1 port on 127.0.0.1): 0 reserved by this deploy, 1 already in use"
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "widen the port range") {
		t.Errorf("message %q lacks %q", err, want)
	}

	// Two processes sharing a one-port range: the second finds it reserved.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	one := config.PortRange{From: p, To: p}
	_, err = Allocate("127.0.0.1", []PortRequest{{"a", one}, {"b", one}}, nil)
	if !errors.As(err, &pe) || pe.ProcessID != "b" || pe.Reserved != 1 {
		t.Errorf("shared range: %v", err)
	}
}

func TestAllocateUnbindable(t *testing.T) {
	// 192.0.2.1 (TEST-NET-1) is not an address of this machine: EADDRNOTAVAIL.
	_, err := Allocate("192.0.2.1", []PortRequest{{"web", config.PortRange{From: 18000, To: 18002}}}, nil)
	var pe *PortError
	if !errors.As(err, &pe) || pe.Unbindable != 3 || !strings.Contains(err.Error(), "3 could not be bound") {
		t.Errorf("got %v", err)
	}
}

func TestWaitHealthy(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path != "/ping" {
			t.Errorf("probed %s", r.URL.Path)
		}
	}))
	defer srv.Close()
	err := WaitHealthy(context.Background(), nil, HealthCheck{URL: srv.URL + "/ping", Timeout: 5 * time.Second, Interval: 250 * time.Millisecond}, nil)
	if err != nil || calls.Load() != 3 {
		t.Errorf("err %v after %d probes, want healthy on the 3rd", err, calls.Load())
	}
}

func TestWaitHealthyFailures(t *testing.T) {
	unhealthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer unhealthy.Close()
	err := WaitHealthy(context.Background(), nil, HealthCheck{URL: unhealthy.URL + "/ping", Timeout: 200 * time.Millisecond, Interval: 20 * time.Millisecond}, nil)
	var he *HealthError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "health check failed for "+unhealthy.URL+"/ping: HTTP 503") {
		t.Errorf("503: got %v", err)
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := ln.Addr().String()
	ln.Close()
	err = WaitHealthy(context.Background(), nil, HealthCheck{URL: "http://" + refused + "/ping", Timeout: 100 * time.Millisecond, Interval: 20 * time.Millisecond}, nil)
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "ECONNREFUSED") {
		t.Errorf("refused: got %v", err)
	}

	exited := make(chan struct{})
	close(exited)
	err = WaitHealthy(context.Background(), nil, HealthCheck{URL: "http://" + refused + "/", Timeout: time.Hour, Interval: time.Second}, exited)
	if !errors.Is(err, ErrExited) {
		t.Errorf("exited: got %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = WaitHealthy(ctx, nil, HealthCheck{URL: "http://" + refused + "/", Timeout: time.Hour, Interval: time.Second, StartDelay: time.Hour}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: got %v", err)
	}
}

func TestStartDelayRunsBeforeTheWindow(t *testing.T) {
	var first atomic.Int64
	start := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first.CompareAndSwap(0, int64(time.Since(start)))
	}))
	defer srv.Close()
	// The window (50ms) is shorter than the delay (150ms): the check still
	// passes because the window only opens after the delay.
	err := WaitHealthy(context.Background(), nil, HealthCheck{URL: srv.URL, Timeout: 50 * time.Millisecond, Interval: 10 * time.Millisecond, StartDelay: 150 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(first.Load()); d < 150*time.Millisecond {
		t.Errorf("first probe after %v, want no earlier than the 150ms start delay", d)
	}
}
