package main

import (
	"context"
	"testing"
	"time"
)

// TestClassify pins which failed requests the run forgives: a wrong
// answer here would hide a failure or invent a violation.
func TestClassify(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	tl := &timeline{}
	tl.kill(at(100))
	tl.crash(at(200))
	tl.crashes[0].to = at(205) // closed when the replacement answered; pinned for the test
	tl.drained(drainEvent{at: at(300), release: "r1", timedOut: true, closed: 2})
	tl.drained(drainEvent{at: at(400), release: "r2", timedOut: false, closed: 0})
	tl.rollback(at(499.5))
	tl.drained(drainEvent{at: at(500), release: "r3", interrupted: true, closed: 1})
	tl.drained(drainEvent{at: at(600), release: "r4", interrupted: true, closed: 1}) // a shutdown: no rollback

	for _, tc := range []struct {
		name       string
		kind       string
		start, end float64
		want       string
	}{
		{"in flight at the kill", "http", 99, 101, causeKill},
		{"sent after the kill", "http", 100.5, 101, ""},
		{"ended before the kill", "http", 98, 99.9, ""},
		{"during the crash window", "http", 201, 201.1, causeCrash},
		{"open when the web process was killed", "ws", 190, 200.1, causeCrash},
		{"after the crash window", "http", 206, 206.1, ""},
		{"websocket cut at the drain timeout", "ws", 296, 300.01, causeDrain},
		{"stream ended with its process after the timeout", "slow", 295, 302.9, causeDrain},
		{"websocket cut long after the timeout", "ws", 295, 302.9, ""},
		{"opened during the drain, on the new release", "ws", 298, 300.01, ""},
		{"plain request at the drain timeout", "http", 296, 300.01, ""},
		{"cut at a drain that did not time out", "ws", 396, 400.01, ""},
		{"cut by a rollback to its draining release", "ws", 499, 500.01, causeRollback},
		{"cut by an interrupted drain with no rollback", "ws", 590, 600.01, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &failure{kind: tc.kind, start: at(tc.start), end: at(tc.end)}
			if got := tl.classify(f); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestGatePause checks that pause waits for what is inside, and that
// entries wait for resume.
func TestGatePause(t *testing.T) {
	var g gate
	ctx := context.Background()
	if !g.enter(ctx) {
		t.Fatal("enter on an open gate refused")
	}
	paused := make(chan error, 1)
	go func() { paused <- g.pause(ctx) }()
	// pause cannot return before leave: active is 1 until then.
	g.mu.Lock()
	active := g.active
	g.mu.Unlock()
	if active != 1 {
		t.Fatalf("active %d, want 1", active)
	}
	g.leave()
	if err := <-paused; err != nil {
		t.Fatal(err)
	}
	entered := make(chan bool, 1)
	go func() { entered <- g.enter(ctx) }()
	g.resume()
	if !<-entered {
		t.Fatal("enter refused after resume")
	}
	g.leave()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if g.enter(cctx) {
		t.Error("enter with an ended context succeeded")
	}
}
