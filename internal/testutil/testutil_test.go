package testutil

import (
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps what a helper reports instead of
// failing the test running it.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestEventuallyReturnsOnceCondHolds(t *testing.T) {
	var calls atomic.Int32
	Eventually(t, "the third call", func() bool { return calls.Add(1) == 3 })
	if n := calls.Load(); n != 3 {
		t.Errorf("cond called %d times, want 3: Eventually returns as soon as cond holds", n)
	}
}

func TestPollFromAnotherGoroutine(t *testing.T) {
	var flag atomic.Bool
	done := make(chan bool, 1)
	go func() { done <- Poll(t, "the flag", flag.Load) }()
	flag.Store(true)
	if !<-done {
		t.Error("Poll returned false although cond came to hold")
	}
}

func TestPollNamesWhatTimedOut(t *testing.T) {
	r := &recorder{TB: t}
	if poll(r, time.Millisecond, "the answer", func() bool { return false }) {
		t.Fatal("poll returned true for a cond that never holds")
	}
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], "waiting for the answer") {
		t.Errorf("got reports %q, want one naming the answer", r.errors)
	}
}

// TestOnlyTestsImportIt keeps the package out of every binary: no
// package's non-test files may import it.
func TestOnlyTestsImportIt(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{range .Imports}}{{$.ImportPath}} {{.}}{{"\n"}}{{end}}`, "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(line, " github.com/rollbridge/rollbridge-go/internal/testutil") {
			t.Errorf("%s: imported by a non-test file", strings.Fields(line)[0])
		}
	}
}
