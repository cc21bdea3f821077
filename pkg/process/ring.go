package process

import (
	"runtime"
	"sync"
	"unicode/utf8"
	"weak"
)

const defaultOutputLines = 50

// Caps on retained output. outputLines alone bounded nothing: a process
// printing 64 KiB lines with outputLines: 3000 held 195 MB, per replica,
// and every status answer carried all of it. The journal (under systemd)
// keeps everything; these caps only bound what the daemon holds in memory.
const (
	// MaxProcessOutput is how many bytes of output one process keeps,
	// whatever its outputLines: 1 MiB, e.g. the last 10,000 lines of 40
	// characters. The newest lines are kept.
	MaxProcessOutput = 1 << 20
	// MaxDaemonOutput is how many bytes of output all the processes of a
	// daemon keep together (its OutputBudget): 32 MiB.
	MaxDaemonOutput = 32 << 20
	// StatusLogBytes is how much of a process's output Status carries:
	// the newest lines up to 16 KiB. Logs has all of it.
	StatusLogBytes = 16 << 10
	// lineOverhead is what a line costs besides its text: its slot in the
	// ring, its time and its stream.
	lineOverhead = 64
)

// Size is what l counts for against the output caps: the bytes of its
// text plus 64 for its time, stream and slot, so that a flood of empty
// lines is bounded too.
func (l Line) Size() int { return len(l.Line) + lineOverhead }

// Tail returns the newest of lines (given oldest first, as Logs returns
// them) whose Sizes add up to at most maxBytes, oldest first, and how many
// older lines it left out. When even the newest line is bigger than
// maxBytes, its text is cut to fit and ends in "…": a process that printed
// something never looks silent.
func Tail(lines []Line, maxBytes int) (kept []Line, omitted int) {
	i, used := len(lines), 0
	for i > 0 && used+lines[i-1].Size() <= maxBytes {
		i--
		used += lines[i].Size()
	}
	if i == len(lines) && i > 0 {
		i--
		last := lines[i]
		last.Line = cut(last.Line, maxBytes-lineOverhead)
		return []Line{last}, i
	}
	return lines[i:], i
}

// cut shortens s to at most n bytes, ending in "…", on a rune boundary.
func cut(s string, n int) string {
	const mark = "…"
	if len(s) <= n {
		return s
	}
	n -= len(mark)
	if n < 0 {
		return ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}

// OutputBudget caps the output kept by all the processes that share it
// (WithOutputBudget): the daemon's processes share one, so that neither
// replicas nor retained releases multiply what it holds. When a new line
// does not fit, the oldest lines of the process that holds the most go
// first, so one chatty process cannot push a quiet one's last words out.
// Create it with NewOutputBudget; it is safe for concurrent use.
//
// A Process that is dropped without being stopped (a pruned release)
// stops counting once the garbage collector has freed it; until then its
// lines still take room, and are the first to go when it holds the most.
type OutputBudget struct {
	// mu guards the budget and every ring attached to it: making room
	// takes lines from another ring, which one lock per ring could not
	// do without an order between the locks. Holding it is short (one
	// line in, a few out), and output readers never wait for anything
	// else while they hold it.
	mu         sync.Mutex
	total      int
	perProcess int
	used       int
	members    map[*account]weak.Pointer[ring]
}

// account is what a ring holds in its budget. It is kept apart from the
// ring so that the cleanup that runs once the ring is freed can find it.
type account struct{ bytes int }

// NewOutputBudget returns a budget that keeps at most total bytes of
// output (as Line.Size counts them) across its processes, and at most
// perProcess bytes of each. The daemon uses MaxDaemonOutput and
// MaxProcessOutput; perProcess should not exceed total.
func NewOutputBudget(total, perProcess int) *OutputBudget {
	return &OutputBudget{total: total, perProcess: min(perProcess, total), members: map[*account]weak.Pointer[ring]{}}
}

// forget stops counting a ring that is gone.
func (b *OutputBudget) forget(a *account) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.members[a]; ok {
		b.used -= a.bytes
		delete(b.members, a)
	}
}

// makeRoomLocked drops the oldest line of the ring that holds the most
// bytes. It reports false when no ring holds any.
func (b *OutputBudget) makeRoomLocked() bool {
	var biggest *ring
	for a, wp := range b.members {
		r := wp.Value()
		if r == nil { // freed, and its cleanup has not run yet
			b.used -= a.bytes
			delete(b.members, a)
			continue
		}
		if a.bytes > 0 && (biggest == nil || a.bytes > biggest.acct.bytes) {
			biggest = r
		}
	}
	if biggest == nil {
		return false
	}
	biggest.dropOldestLocked()
	return true
}

// ring keeps the most recent lines of one process: at most max of them,
// and at most maxBytes (and, with a budget, what the budget leaves it).
// It has its own lock, or its budget's, because the output readers add
// to it constantly and must never wait for the Process's lock. Its buffer
// grows as lines arrive, so a large outputLines costs nothing until used.
type ring struct {
	mu       *sync.Mutex
	budget   *OutputBudget // nil: no cap shared with other processes
	acct     *account      // the bytes it holds
	maxBytes int
	max      int    // outputLines
	buf      []Line // circular; the oldest line is at head
	head, n  int
}

func newRing(n int, budget *OutputBudget) *ring {
	r := &ring{mu: &sync.Mutex{}, acct: &account{}, maxBytes: MaxProcessOutput}
	if budget != nil {
		r.mu, r.budget, r.maxBytes = &budget.mu, budget, budget.perProcess
		budget.mu.Lock()
		budget.members[r.acct] = weak.Make(r)
		budget.mu.Unlock()
		runtime.AddCleanup(r, budget.forget, r.acct)
	}
	r.resize(n)
	return r
}

func (r *ring) add(l Line) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l.Size() > r.maxBytes {
		l.Line = cut(l.Line, r.maxBytes-lineOverhead)
	}
	size := l.Size()
	for r.n > 0 && (r.n >= r.max || r.acct.bytes+size > r.maxBytes) {
		r.dropOldestLocked()
	}
	if b := r.budget; b != nil {
		for b.used+size > b.total {
			if !b.makeRoomLocked() {
				break
			}
		}
	}
	if r.n == len(r.buf) {
		r.growLocked()
	}
	r.buf[(r.head+r.n)%len(r.buf)] = l
	r.n++
	r.acct.bytes += size
	if r.budget != nil {
		r.budget.used += size
	}
}

// dropOldestLocked forgets the oldest line.
func (r *ring) dropOldestLocked() {
	size := r.buf[r.head].Size()
	r.buf[r.head] = Line{} // let its text be freed
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.acct.bytes -= size
	if r.budget != nil {
		r.budget.used -= size
	}
}

// growLocked makes room for one more line: double the buffer, up to max.
func (r *ring) growLocked() {
	c := min(max(2*len(r.buf), 16), r.max)
	r.relayoutLocked(c)
}

// relayoutLocked moves the lines, oldest first, into a buffer of c slots.
func (r *ring) relayoutLocked(c int) {
	buf := make([]Line, c)
	r.copyLocked(buf, 0, r.n)
	r.buf, r.head = buf, 0
}

// copyLocked copies the lines from the i-th oldest to the j-th into dst.
func (r *ring) copyLocked(dst []Line, i, j int) {
	for k := i; k < j; k++ {
		dst[k-i] = r.buf[(r.head+k)%len(r.buf)]
	}
}

// snapshot returns the kept lines, oldest first.
func (r *ring) snapshot() []Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Line, r.n)
	r.copyLocked(out, 0, r.n)
	return out
}

// tail is Tail(snapshot(), maxBytes) without copying the lines it leaves
// out.
func (r *ring) tail(maxBytes int) ([]Line, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, used := r.n, 0
	for i > 0 {
		s := r.buf[(r.head+i-1)%len(r.buf)].Size()
		if used+s > maxBytes {
			break
		}
		used += s
		i--
	}
	if i == r.n && i > 0 {
		i-- // even the newest line is too big: Tail cuts it
	}
	out := make([]Line, r.n-i)
	r.copyLocked(out, i, r.n)
	kept, omitted := Tail(out, maxBytes)
	return kept, i + omitted
}

// resize changes the line capacity to n (<= 0 means the default), keeping
// the newest lines that fit.
func (r *ring) resize(n int) {
	if n <= 0 {
		n = defaultOutputLines
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.max = n
	for r.n > n {
		r.dropOldestLocked()
	}
	if len(r.buf) > n {
		r.relayoutLocked(n)
	}
}
