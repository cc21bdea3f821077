package events

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// DefaultCapacity is how many events the daemon keeps in memory.
const DefaultCapacity = 1000

// TimeLayout is how events (and everything else the daemon reports) write
// a time: UTC with exactly three fractional digits, as JavaScript's
// Date.toISOString does in the Node original ("2026-06-01T10:00:05.120Z").
const TimeLayout = "2006-01-02T15:04:05.000Z"

// Event is one entry of the history. Data is never nil once emitted. Its
// JSON is the spec's {"at","data","message"}, with At in TimeLayout.
type Event struct {
	At      time.Time      `json:"at"`
	Data    map[string]any `json:"data"`
	Message Name           `json:"message"`
}

// MarshalJSON writes {"at","data","message"} with At in TimeLayout; the
// default decoding reads it back. <, > and & are written as they are, as
// the Node original's JSON.stringify writes them.
func (e Event) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(struct {
		At      string         `json:"at"`
		Data    map[string]any `json:"data"`
		Message Name           `json:"message"`
	}{e.At.UTC().Format(TimeLayout), e.Data, e.Message})
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Sink receives events. Every package that reports something takes a Sink, so
// tests can pass a *Log and read back what happened.
type Sink interface {
	Emit(name Name, data map[string]any)
}

// Output is where an emitted event is written after it entered the history.
// Write is called from one goroutine, in emission order, off the emitter's
// path (see Log), so an Output need not be safe for concurrent use and may
// be slow. It must not call back into the Log.
type Output interface {
	Write(Event)
}

// OutputFunc adapts a function to Output.
type OutputFunc func(Event)

// Write calls f(e).
func (f OutputFunc) Write(e Event) { f(e) }

// QueueLength bounds the events waiting for the outputs. When a stalled
// output (a journal socket that does not drain, a blocked stdout) lets it
// fill up, new events are still recorded in the history but not written;
// the drops are counted and reported as one "events dropped" event once
// the outputs catch up.
const QueueLength = 4096

// Log is a Sink holding the most recent events in a ring. The zero value is
// not usable; call New. A Log with outputs owns one goroutine that writes
// to them; Close stops it after writing what is queued.
//
// Emit never waits for an output: it records the event in the ring and
// hands it to the writer through a bounded queue, so a stalled output never
// blocks the daemon.
type Log struct {
	mu      sync.Mutex
	ring    []Event
	next    int // index the next event is written to
	full    bool
	now     func() time.Time
	queue   chan Event // nil without outputs
	closed  bool
	dropped uint64 // not written since the last "events dropped" report
	lost    uint64 // not written, ever
	done    chan struct{}
}

// New returns a Log keeping the last capacity events (DefaultCapacity when
// capacity <= 0) and writing each event to outputs.
func New(capacity int, outputs ...Output) *Log {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	l := &Log{ring: make([]Event, capacity), now: time.Now, done: make(chan struct{})}
	if len(outputs) == 0 {
		close(l.done)
		return l
	}
	l.queue = make(chan Event, QueueLength)
	go l.write(outputs)
	return l
}

// write is the one goroutine that calls the outputs.
func (l *Log) write(outputs []Output) {
	defer close(l.done)
	for e := range l.queue {
		for _, o := range outputs {
			o.Write(e)
		}
		l.mu.Lock()
		n := l.dropped
		l.dropped = 0
		l.mu.Unlock()
		if n > 0 {
			// Written here, not queued: the queue may still be full.
			d := Event{At: l.now().UTC(), Message: EventsDropped, Data: map[string]any{KeyCount: n,
				KeyHint: "an output (journal, stdout) was too slow; the events are in the history (rollbridgectl events) but were not logged"}}
			for _, o := range outputs {
				o.Write(d)
			}
		}
	}
}

// Emit records an event. The data map is copied, so callers may reuse it.
// After Close, events are still recorded in the history but not written.
func (l *Log) Emit(name Name, data map[string]any) {
	d := make(map[string]any, len(data))
	for k, v := range data {
		d[k] = v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := Event{At: l.now().UTC(), Message: name, Data: d}
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
	if l.next == 0 {
		l.full = true
	}
	if l.queue == nil || l.closed {
		return
	}
	select {
	case l.queue <- e:
	default:
		l.dropped++
		l.lost++
	}
}

// Dropped returns how many events were recorded but never written to the
// outputs because their queue was full.
func (l *Log) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Close writes the events still queued, stops the writer and returns once
// it has. It is idempotent.
func (l *Log) Close() {
	l.mu.Lock()
	if l.queue != nil && !l.closed {
		l.closed = true
		close(l.queue)
	}
	l.mu.Unlock()
	<-l.done
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
// shape {"at","data","message"}. Write errors are ignored: losing a log line
// must never stop the daemon.
func JSONLines(w io.Writer) Output {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return OutputFunc(func(e Event) {
		_ = enc.Encode(e) // see doc: a broken stdout must not stop the daemon
	})
}

// Discard is a Sink that drops everything; for callers that have no history.
var Discard Sink = discard{}

type discard struct{}

func (discard) Emit(Name, map[string]any) {}
