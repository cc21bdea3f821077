package process

import "sync"

// ring keeps the last n output lines.
type ring struct {
	mu    sync.Mutex
	lines []Line
	next  int
	full  bool
}

func newRing(n int) *ring {
	if n <= 0 {
		n = 50
	}
	return &ring{lines: make([]Line, n)}
}

func (r *ring) add(l Line) {
	r.mu.Lock()
	r.lines[r.next] = l
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
	r.mu.Unlock()
}

func (r *ring) snapshot() []Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]Line(nil), r.lines[:r.next]...)
	}
	out := make([]Line, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...)
}
