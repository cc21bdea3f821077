// Package events records what the daemon does: a bounded in-memory history
// (what `rollbridgectl events` shows) fanned out to any number of outputs
// (JSON lines on stdout, or the journal).
//
// Messages are the spec's event names ("deploy starting", "traffic switched",
// "process started", ...); the data payload carries the details. Emitting is
// safe from any goroutine and never blocks on a slow reader of the history.
package events
