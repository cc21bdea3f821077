package process

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRing(t *testing.T) {
	t.Parallel()
	texts := func(ls []Line) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Line)
		}
		return out
	}
	r := newRing(3, nil)
	if got := r.snapshot(); got == nil || len(got) != 0 {
		t.Errorf("empty ring snapshot %#v, want an empty non-nil slice", got)
	}
	for i := range 5 {
		r.add(Line{Line: fmt.Sprint(i)})
	}
	if got := texts(r.snapshot()); !slices.Equal(got, []string{"2", "3", "4"}) {
		t.Errorf("after 5 adds: %v", got)
	}
	r.resize(5)
	r.add(Line{Line: "5"})
	if got := texts(r.snapshot()); !slices.Equal(got, []string{"2", "3", "4", "5"}) {
		t.Errorf("grown: %v", got)
	}
	r.resize(2)
	if got := texts(r.snapshot()); !slices.Equal(got, []string{"4", "5"}) {
		t.Errorf("shrunk: %v", got)
	}
	r.add(Line{Line: "6"})
	if got := texts(r.snapshot()); !slices.Equal(got, []string{"5", "6"}) {
		t.Errorf("after shrink and add: %v", got)
	}
	if n := newRing(0, nil).max; n != defaultOutputLines {
		t.Errorf("default capacity %d, want %d", n, defaultOutputLines)
	}
}

func TestReadLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("y", maxLineBytes+10)
	// "é" is two bytes; placed across the cut, it must not be split in half.
	cutRune := strings.Repeat("z", maxLineBytes-1) + "é" + "tail"
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"plain", "a\nb\n", []string{"a", "b"}},
		{"crlf, and empty lines dropped", "a\r\n\n\r\nb\n \n", []string{"a", "b", " "}},
		{"partial last line", "a\nrest", []string{"a", "rest"}},
		{"long line is cut", long + "\nnext\n", []string{long[:maxLineBytes], "next"}},
		{"long partial line", long, []string{long[:maxLineBytes]}},
		{"cut between the bytes of a character", cutRune + "\nnext\n", []string{cutRune[:maxLineBytes-1], "next"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			readLines(strings.NewReader(tc.in), "stdout", func(l Line) {
				if l.Stream != "stdout" || l.At.IsZero() || !utf8.ValidString(l.Line) {
					t.Errorf("line %+v", l)
				}
				got = append(got, l.Line)
			})
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %d lines %.80q, want %d %.80q", len(got), got, len(tc.want), tc.want)
			}
		})
	}
}

func TestLineWriter(t *testing.T) {
	t.Parallel()
	var got []string
	w := &lineWriter{stream: "stderr", prefix: "[hook] ", out: func(l Line) { got = append(got, l.Stream+" "+l.Line) }}
	long := strings.Repeat("q", maxLineBytes+5)
	for _, chunk := range []string{"fir", "st\r\nsec", "ond\n\n\r\n", long[:100], long[100:] + "\n", "tail"} { // blank lines are dropped
		if _, err := io.WriteString(w, chunk); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	want := []string{"stderr [hook] first", "stderr [hook] second", "stderr [hook] " + long[:maxLineBytes], "stderr [hook] tail"}
	if !slices.Equal(got, want) {
		t.Errorf("got %.60q, want %.60q", got, want)
	}
}

func TestRestartDelay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		base   time.Duration
		factor float64
		n      int
		max    time.Duration
		want   time.Duration
	}{
		{"constant", time.Second, 1, 5, 0, time.Second},
		{"first restart", time.Second, 2, 0, 0, time.Second},
		{"doubling", time.Second, 2, 3, 0, 8 * time.Second},
		{"capped", time.Second, 2, 10, 30 * time.Second, 30 * time.Second},
		{"fraction", 100 * time.Millisecond, 1.5, 2, 0, 225 * time.Millisecond},
		{"factor below 1 is 1", time.Second, 0.5, 3, 0, time.Second},
		{"zero base", 0, 2, 3, 0, 0},
		{"huge exponent stays positive and capped", time.Second, 10, 400, time.Minute, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := restartDelay(tc.base, tc.factor, tc.n, tc.max); got != tc.want {
				t.Errorf("restartDelay(%v, %v, %d, %v) = %v, want %v", tc.base, tc.factor, tc.n, tc.max, got, tc.want)
			}
		})
	}
	if got := restartDelay(time.Second, 10, 400, 0); got <= 0 {
		t.Errorf("uncapped huge delay overflowed to %v", got)
	}
}

func TestNextRestart(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	base := time.Second
	for _, tc := range []struct {
		name      string
		pol       RestartPolicy
		restarts  []time.Time
		wantKept  int
		wantDelay time.Duration
		wantOK    bool
	}{
		{"unlimited, first", RestartPolicy{MaxRestarts: -1, BackoffFactor: 2}, nil, 0, time.Second, true},
		{"lifetime window keeps all", RestartPolicy{MaxRestarts: -1, BackoffFactor: 2},
			[]time.Time{ago(time.Hour), ago(time.Minute)}, 2, 4 * time.Second, true},
		{"rolling window drops old restarts", RestartPolicy{MaxRestarts: 2, Window: time.Minute, BackoffFactor: 2},
			[]time.Time{ago(2 * time.Minute), ago(90 * time.Second), ago(10 * time.Second)}, 1, 2 * time.Second, true},
		{"backoff resets after a quiet window", RestartPolicy{MaxRestarts: -1, Window: time.Minute, BackoffFactor: 2},
			[]time.Time{ago(3 * time.Minute), ago(2 * time.Minute)}, 0, time.Second, true},
		{"limit reached", RestartPolicy{MaxRestarts: 2, Window: time.Minute},
			[]time.Time{ago(20 * time.Second), ago(10 * time.Second)}, 2, 0, false},
		{"never", RestartPolicy{MaxRestarts: 0}, nil, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.restarts)
			kept, delay, ok := nextRestart(base, tc.pol, in, now)
			if len(kept) != tc.wantKept || delay != tc.wantDelay || ok != tc.wantOK {
				t.Errorf("got %d kept, %v, %v; want %d, %v, %v", len(kept), delay, ok, tc.wantKept, tc.wantDelay, tc.wantOK)
			}
			if !slices.Equal(in, tc.restarts) {
				t.Errorf("input modified: %v", in)
			}
		})
	}
}
