package process

import "sync"

const defaultOutputLines = 50

// ring keeps the most recent lines. It has its own lock because the output
// readers add to it constantly and must never wait for the Process's lock.
type ring struct {
	mu    sync.Mutex
	lines []Line // capacity-sized; the oldest line is at next once full
	next  int
	full  bool
}

func newRing(n int) *ring {
	r := &ring{}
	r.resize(n)
	return r
}

func (r *ring) add(l Line) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines[r.next] = l
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
}

// snapshot returns the kept lines, oldest first.
func (r *ring) snapshot() []Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshotLocked()
}

func (r *ring) snapshotLocked() []Line {
	if !r.full {
		return append([]Line{}, r.lines[:r.next]...)
	}
	out := make([]Line, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...)
}

// resize changes the capacity to n (<= 0 means the default), keeping the
// newest lines that fit.
func (r *ring) resize(n int) {
	if n <= 0 {
		n = defaultOutputLines
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) == n {
		return
	}
	old := r.snapshotLocked()
	if len(old) > n {
		old = old[len(old)-n:]
	}
	r.lines = make([]Line, n)
	copy(r.lines, old)
	r.next = len(old) % n
	r.full = len(old) == n
}
