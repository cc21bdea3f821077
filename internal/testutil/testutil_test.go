package testutil

import (
	"fmt"
	"os/exec"
	"runtime"
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

// skipRecorder keeps what NeedTool reports instead of skipping or failing
// the test running it. SkipNow and FailNow must still end the helper, as
// the real ones do, so they leave by runtime.Goexit in a goroutine of
// their own.
type skipRecorder struct {
	testing.TB
	skipped, fatal []string
}

func (r *skipRecorder) Helper() {}
func (r *skipRecorder) Skipf(format string, args ...any) {
	r.skipped = append(r.skipped, fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (r *skipRecorder) Fatalf(format string, args ...any) {
	r.fatal = append(r.fatal, fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func needToolIn(t *testing.T, ci string, name string) *skipRecorder {
	t.Helper()
	t.Setenv("CI", ci)
	r := &skipRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		NeedTool(r, name)
	}()
	<-done
	return r
}

func TestNeedTool(t *testing.T) {
	const absent = "rollbridge-no-such-tool"
	if r := needToolIn(t, "", "sh"); len(r.skipped)+len(r.fatal) != 0 {
		t.Errorf("an installed tool: skipped %q, failed %q", r.skipped, r.fatal)
	}
	r := needToolIn(t, "", absent)
	if len(r.skipped) != 1 || len(r.fatal) != 0 || !strings.Contains(r.skipped[0], absent+" is not installed") {
		t.Errorf("missing outside CI: skipped %q, failed %q; want one skip naming the tool", r.skipped, r.fatal)
	}
	r = needToolIn(t, "1", absent)
	if len(r.fatal) != 1 || len(r.skipped) != 0 || !strings.Contains(r.fatal[0], absent+" is not installed") {
		t.Errorf("missing under CI: skipped %q, failed %q; want one failure naming the tool", r.skipped, r.fatal)
	}
}
