package process

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

func lineOf(n int, tag string) Line {
	return Line{Line: tag + strings.Repeat("x", n-len(tag)-lineOverhead), Stream: "stdout"}
}

func texts(ls []Line) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, strings.ReplaceAll(l.Line, "x", ""))
	}
	return out
}

func sizeOf(ls []Line) int {
	n := 0
	for _, l := range ls {
		n += l.Size()
	}
	return n
}

// TestRingByteCap: a process keeps the newest lines that fit its byte cap,
// however many lines outputLines would allow.
func TestRingByteCap(t *testing.T) {
	t.Parallel()
	b := NewOutputBudget(1<<20, 1000)
	r := newRing(100, b)
	for i := range 10 {
		r.add(lineOf(300, fmt.Sprint(i))) // 3 fit in 1000 bytes
	}
	if got := texts(r.snapshot()); !slices.Equal(got, []string{"7", "8", "9"}) {
		t.Errorf("kept %v, want the newest three", got)
	}
	if b.used != 900 {
		t.Errorf("budget counts %d bytes, want 900", b.used)
	}
	// A line bigger than the cap is cut to fit, never dropped.
	r.add(Line{Line: strings.Repeat("é", 1000)})
	got := r.snapshot()
	if len(got) != 1 || got[0].Size() > 1000 || !strings.HasSuffix(got[0].Line, "é…") {
		t.Errorf("an oversized line became %d lines, the last %d bytes, ending %q", len(got), got[len(got)-1].Size(), got[len(got)-1].Line[len(got[len(got)-1].Line)-8:])
	}
}

// TestOutputBudgetTakesFromTheBiggest: when the daemon-wide budget is
// full, the process holding the most gives up its oldest lines; a quiet
// process keeps what it printed.
func TestOutputBudgetTakesFromTheBiggest(t *testing.T) {
	t.Parallel()
	b := NewOutputBudget(2000, 1500)
	quiet, noisy := newRing(100, b), newRing(100, b)
	quiet.add(lineOf(200, "last words"))
	for i := range 50 {
		noisy.add(lineOf(100, fmt.Sprint(i)))
	}
	if got := texts(quiet.snapshot()); !slices.Equal(got, []string{"last words"}) {
		t.Errorf("quiet process kept %v", got)
	}
	if n := sizeOf(noisy.snapshot()); n != 1500 {
		t.Errorf("noisy process keeps %d bytes, want its cap of 1500", n)
	}
	// Fill the rest: a third process pushes the noisy one below its cap.
	third := newRing(100, b)
	for i := range 5 {
		third.add(lineOf(100, fmt.Sprint(i)))
	}
	if b.used > 2000 {
		t.Errorf("the budget holds %d bytes, over its 2000", b.used)
	}
	if got := texts(quiet.snapshot()); !slices.Equal(got, []string{"last words"}) {
		t.Errorf("quiet process kept %v", got)
	}
	if got := texts(third.snapshot()); len(got) != 5 {
		t.Errorf("third process kept %v, want all five lines", got)
	}
	if n, want := sizeOf(noisy.snapshot()), 2000-200-500; n != want {
		t.Errorf("noisy process keeps %d bytes, want %d", n, want)
	}
}

// TestOutputBudgetForgetsFreedProcesses: a ring nobody holds any more (a
// pruned release's process) stops counting once it has been collected.
func TestOutputBudgetForgetsFreedProcesses(t *testing.T) {
	t.Parallel()
	b := NewOutputBudget(1<<20, 1<<20)
	func() {
		r := newRing(10, b)
		r.add(lineOf(500, "gone"))
	}()
	testutil.Eventually(t, "the freed ring to be forgotten", func() bool {
		runtime.GC()
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.used == 0 && len(b.members) == 0
	})
}

func TestTail(t *testing.T) {
	t.Parallel()
	lines := []Line{lineOf(100, "a"), lineOf(100, "b"), lineOf(100, "c")}
	for _, tc := range []struct {
		name     string
		max      int
		want     []string
		omitted  int
		wantSize int
	}{
		{"all fit", 300, []string{"a", "b", "c"}, 0, 300},
		{"the newest two", 250, []string{"b", "c"}, 1, 200},
		{"the newest, cut", 80, []string{"c…"}, 2, 80},
		{"nothing fits at all", 10, []string{""}, 2, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kept, omitted := Tail(lines, tc.max)
			if got := texts(kept); !slices.Equal(got, tc.want) || omitted != tc.omitted || sizeOf(kept) != tc.wantSize {
				t.Errorf("got %q (%d bytes), %d omitted; want %q (%d bytes), %d omitted", got, sizeOf(kept), omitted, tc.want, tc.wantSize, tc.omitted)
			}
		})
	}
	if kept, omitted := Tail(nil, 100); len(kept) != 0 || omitted != 0 {
		t.Errorf("empty: %v %d", kept, omitted)
	}
	// The ring's own tail agrees, without copying what it leaves out.
	r := newRing(10, nil)
	for _, l := range lines {
		r.add(l)
	}
	kept, omitted := r.tail(250)
	if got := texts(kept); !slices.Equal(got, []string{"b", "c"}) || omitted != 1 {
		t.Errorf("ring tail: %v, %d omitted", got, omitted)
	}
}
