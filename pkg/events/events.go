package events

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// DefaultCapacity is how many events the daemon keeps in memory.
const DefaultCapacity = 1000

// Event is one entry of the history. Data is never nil once emitted.
type Event struct {
	At      time.Time      `json:"at"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

// Sink receives events. Every package that reports something takes a Sink, so
// tests can pass a *Log and read back what happened.
type Sink interface {
	Emit(message string, data map[string]any)
}

// Output is where an emitted event is written after it entered the history.
// Write is called with the Log's output lock held, in emission order, so an
// Output need not be safe for concurrent use. It must not call back into the Log.
type Output interface {
	Write(Event)
}

// OutputFunc adapts a function to Output.
type OutputFunc func(Event)

// Write calls f(e).
func (f OutputFunc) Write(e Event) { f(e) }

// Log is a Sink holding the most recent events in a ring. The zero value is
// not usable; call New.
type Log struct {
	mu      sync.Mutex
	ring    []Event
	next    int // index the next event is written to
	full    bool
	outputs []Output
	now     func() time.Time
}

// New returns a Log keeping the last capacity events (DefaultCapacity when
// capacity <= 0) and writing each event to outputs.
func New(capacity int, outputs ...Output) *Log {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Log{ring: make([]Event, capacity), outputs: outputs, now: time.Now}
}

// Emit records an event. The data map is copied, so callers may reuse it.
func (l *Log) Emit(message string, data map[string]any) {
	d := make(map[string]any, len(data))
	for k, v := range data {
		d[k] = v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := Event{At: l.now().UTC(), Message: message, Data: d}
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
	if l.next == 0 {
		l.full = true
	}
	for _, o := range l.outputs {
		o.Write(e)
	}
}

// Recent returns up to limit of the newest events, oldest first. limit <= 0
// means all retained events.
func (l *Log) Recent(limit int) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.next
	if l.full {
		n = len(l.ring)
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	out := make([]Event, 0, limit)
	start := (l.next - limit + len(l.ring)) % len(l.ring)
	for i := 0; i < limit; i++ {
		out = append(out, l.ring[(start+i)%len(l.ring)])
	}
	return out
}

// Restore puts previously recorded events back into the history without
// writing them to the outputs (they were written when they happened). Used
// when a daemon restores its state file.
func (l *Log) Restore(evs []Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range evs {
		l.ring[l.next] = e
		l.next = (l.next + 1) % len(l.ring)
		if l.next == 0 {
			l.full = true
		}
	}
}

// JSONLines returns an Output writing one JSON object per line to w, in the
// shape {"at","message","data"}. Write errors are ignored: losing a log line
// must never stop the daemon.
func JSONLines(w io.Writer) Output {
	enc := json.NewEncoder(w)
	return OutputFunc(func(e Event) {
		_ = enc.Encode(e) // see doc: a broken stdout must not stop the daemon
	})
}

// Discard is a Sink that drops everything; for callers that have no history.
var Discard Sink = discard{}

type discard struct{}

func (discard) Emit(string, map[string]any) {}
