package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestRecentKeepsNewestInOrder(t *testing.T) {
	l := New(3)
	for i := 0; i < 5; i++ {
		l.Emit(Name(fmt.Sprintf("e%d", i)), map[string]any{"i": i})
	}
	got := l.Recent(0)
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3", len(got))
	}
	for i, want := range []string{"e2", "e3", "e4"} {
		if string(got[i].Message) != want {
			t.Errorf("event %d: got %q, want %q", i, got[i].Message, want)
		}
	}
	if last := l.Recent(1); len(last) != 1 || last[0].Message != "e4" {
		t.Errorf("Recent(1) = %+v, want e4", last)
	}
	if all := l.Recent(10); len(all) != 3 {
		t.Errorf("Recent(10) returned %d, want 3", len(all))
	}
}

func TestRecentBeforeFull(t *testing.T) {
	l := New(10)
	l.Emit("a", nil)
	l.Emit("b", nil)
	got := l.Recent(0)
	if len(got) != 2 || got[0].Message != "a" || got[1].Message != "b" {
		t.Fatalf("got %+v", got)
	}
	if got[0].Data == nil {
		t.Errorf("nil data should become an empty object")
	}
}

func TestJSONLinesOutput(t *testing.T) {
	var buf bytes.Buffer
	l := New(0, JSONLines(&buf))
	l.Emit("traffic switched", map[string]any{"releaseId": "v2"})
	l.Close() // writes what is queued
	var e struct {
		At      string         `json:"at"`
		Message string         `json:"message"`
		Data    map[string]any `json:"data"`
	}
	if err := json.Unmarshal(buf.Bytes(), &e); err != nil {
		t.Fatalf("output %q is not one JSON object: %v", buf.String(), err)
	}
	if e.Message != "traffic switched" || e.Data["releaseId"] != "v2" || e.At == "" {
		t.Errorf("got %+v", e)
	}
}

// TestEventJSONIsTheSpecs: the spec's key order and a JavaScript
// toISOString time (UTC, exactly three fractional digits), and it reads
// back to the same event.
func TestEventJSONIsTheSpecs(t *testing.T) {
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 6, 1, 10, 0, 5, 120_999_999, time.UTC), `{"at":"2026-06-01T10:00:05.120Z","data":{"releaseId":"v2"},"message":"traffic switched"}`},
		{time.Date(2026, 6, 1, 12, 0, 5, 0, time.FixedZone("CEST", 7200)), `{"at":"2026-06-01T10:00:05.000Z","data":{"releaseId":"v2"},"message":"traffic switched"}`},
	} {
		e := Event{At: tc.at, Message: TrafficSwitched, Data: map[string]any{"releaseId": "v2"}}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tc.want {
			t.Errorf("got  %s\nwant %s", b, tc.want)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !back.At.Equal(tc.at.Truncate(time.Millisecond)) || back.Message != e.Message || back.Data["releaseId"] != "v2" {
			t.Errorf("read back %+v", back)
		}
	}
}

func TestEmitCopiesData(t *testing.T) {
	l := New(2)
	d := map[string]any{"k": 1}
	l.Emit("x", d)
	d["k"] = 2
	if got := l.Recent(1)[0].Data["k"]; got != 1 {
		t.Errorf("got %v, want 1", got)
	}
}

func TestConcurrentEmit(t *testing.T) {
	l := New(DefaultCapacity)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				l.Emit("e", nil)
				_ = l.Recent(5)
			}
		}()
	}
	wg.Wait()
	if n := len(l.Recent(0)); n != DefaultCapacity {
		t.Errorf("got %d events, want %d", n, DefaultCapacity)
	}
}

// TestStalledOutputNeverBlocksEmit stalls the only output and checks that
// emitting goes on at full speed, that the history keeps everything, and
// that the drops are counted and reported once the output moves again.
func TestStalledOutputNeverBlocksEmit(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var written []Event
	l := New(10*QueueLength, OutputFunc(func(e Event) {
		<-release // stalled until the test lets go
		mu.Lock()
		written = append(written, e)
		mu.Unlock()
	}))
	const n = 2 * QueueLength
	done := make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			l.Emit("e", map[string]any{"i": i})
		}
		close(done)
	}()
	<-done // returns although the output has not written one event
	if got := len(l.Recent(0)); got != n {
		t.Errorf("history has %d events, want %d", got, n)
	}
	if d := l.Dropped(); d == 0 || d >= n {
		t.Errorf("Dropped() = %d, want some but not all of %d", d, n)
	}
	close(release)
	l.Close()
	mu.Lock()
	defer mu.Unlock()
	var report *Event
	for i := range written {
		if written[i].Message == EventsDropped {
			report = &written[i]
		}
	}
	if report == nil || report.Data[KeyCount] != l.Dropped() {
		t.Fatalf("no %q event with the count %d among %d written", EventsDropped, l.Dropped(), len(written))
	}
	if got := uint64(len(written)-1) + l.Dropped(); got != n {
		t.Errorf("written %d + dropped %d != emitted %d", len(written)-1, l.Dropped(), n)
	}
	// Order is kept for what was written.
	last := -1
	for _, e := range written {
		if i, ok := e.Data["i"].(int); ok {
			if i <= last {
				t.Fatalf("event %d written after %d", i, last)
			}
			last = i
		}
	}
}

func TestCloseIsIdempotentAndEmitAfterCloseRecords(t *testing.T) {
	var buf bytes.Buffer
	l := New(0, JSONLines(&buf))
	l.Emit("a", nil)
	l.Close()
	l.Close()
	l.Emit("b", nil)
	if n := len(l.Recent(0)); n != 2 {
		t.Errorf("history has %d events, want 2", n)
	}
	if got := bytes.Count(buf.Bytes(), []byte("\n")); got != 1 {
		t.Errorf("%d lines written, want only the one before Close", got)
	}
	New(0).Close() // no outputs, no goroutine
}

func TestPriorities(t *testing.T) {
	for _, c := range []struct {
		n    Name
		want Priority
	}{{DeployFailed, PriErr}, {MemoryWarning, PriWarning}, {TrafficSwitched, PriNotice}, {ProcessStarted, PriInfo}, {Name("unknown"), PriInfo}} {
		if got := c.n.Priority(); got != c.want {
			t.Errorf("%s: priority %d, want %d", c.n, got, c.want)
		}
	}
}
