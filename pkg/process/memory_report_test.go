package process

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// TestMemoryReportInsteadOfRestart: with WithMemoryReport a process over
// its limit keeps running and its owner is told at every sample above the
// limit, while "memory limit exceeded" is recorded once; a successor made
// WithMemoryReplacementOf carries the counts on.
func TestMemoryReportInsteadOfRestart(t *testing.T) {
	t.Parallel()
	const MiB = 1 << 20
	spec := childSpec(t, "hog", "hog", "RB_MIB=64")
	spec.Memory = &MemoryPolicy{LimitBytes: 32 * MiB, CheckInterval: 20 * time.Millisecond}
	var reports atomic.Int32
	h := newHarness(t, spec, WithMemoryReport(func() { reports.Add(1) }))
	pid := h.start()
	testutil.Eventually(t, "three reports", func() bool { return reports.Load() >= 3 })
	st := h.p.Status()
	if st.Pid == nil || *st.Pid != pid || st.State != Running || st.MemoryRestarts != 0 {
		t.Errorf("after the reports: pid %v (want %d) state %s memoryRestarts %d; want the same run, not restarted", st.Pid, pid, st.State, st.MemoryRestarts)
	}
	if n := len(h.events("memory limit exceeded")); n != 1 {
		t.Errorf("%d \"memory limit exceeded\" events, want 1 per run", n)
	}
	if n := len(h.events("process started")); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
	if ms := h.p.Members(); !slices.ContainsFunc(ms, func(m Member) bool { return m.Pid == pid }) {
		t.Errorf("Members() = %+v, want the leader %d", ms, pid)
	}

	next := newHarness(t, childSpec(t, "hog", "hog", "RB_MIB=1"), WithMemoryReplacementOf(h.p))
	if err := next.p.Start(t.Context(), ReasonMemory); err != nil {
		t.Fatal(err)
	}
	ns := next.p.Status()
	if ns.MemoryRestarts != 1 || ns.LastMemoryRestartAt == nil || ns.LastStartReason == nil || *ns.LastStartReason != ReasonMemory {
		t.Errorf("successor: memoryRestarts %d at %v reason %v; want 1, set, memory", ns.MemoryRestarts, ns.LastMemoryRestartAt, ns.LastStartReason)
	}
	h.stop()
	if ms := h.p.Members(); len(ms) != 0 {
		t.Errorf("Members() of a stopped process = %+v", ms)
	}
}
