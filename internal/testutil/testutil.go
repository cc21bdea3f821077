// Package testutil holds the helpers every test package shares: waiting
// for a state (Eventually, Poll) and requiring what a test needs of the
// host (NeedTool, NeedRoot).
//
// Only _test.go files import it: no binary links it, which is why it may
// stop a test with t.FailNow. A test waits for a state it cannot be told
// about (a counter dropping, a file rewritten, a process gone) with
// Eventually, never with a sleep of a guessed length.
package testutil

import (
	"testing"
	"time"
)

// Timeout bounds every wait in the tests. It is far above anything a
// healthy run needs, even with -race on a loaded two-core host, so it
// fires only on a real hang, and the failure then names what hung.
const Timeout = 30 * time.Second

// pollInterval is how long Eventually waits between two calls of cond:
// short, so a wait ends soon after cond holds, yet long enough that a
// cond which reads /proc or asks the daemon does not keep a core busy.
const pollInterval = 10 * time.Millisecond

// Eventually calls cond until it returns true. If that does not happen
// within Timeout, it fails the test with t.Fatalf, naming what (a phrase
// such as "v1 stopped") as the thing that was awaited. cond is first
// called at once, then every few milliseconds, always from the caller's
// goroutine; it must not block for long.
//
// Like t.Fatal, Eventually must be called from the goroutine running the
// test. Other goroutines use Poll.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Poll(t, what, cond) {
		t.FailNow()
	}
}

// Poll is Eventually for any goroutine: on a timeout it reports the
// failure with t.Errorf and returns false instead of stopping the test, so
// the caller can return. It returns true as soon as cond does.
func Poll(t testing.TB, what string, cond func() bool) bool {
	t.Helper()
	return poll(t, Timeout, what, cond)
}

func poll(t testing.TB, timeout time.Duration, what string, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out after %v waiting for %s", timeout, what)
			return false
		}
		time.Sleep(pollInterval) // the gap between two looks; cond, not this sleep, ends the wait
	}
	return true
}
