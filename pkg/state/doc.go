// Package state persists what the daemon runs (statePath) so that the next
// daemon can tell what a crashed one left behind — orphaned processes — and
// bring the active release back after a reboot.
//
// Writes are atomic (temporary file, fsync, rename, fsync of the directory),
// so a reader sees the old snapshot or the new one, never half of one.
// Nothing that may hold a secret is written: no process environment,
// command line, working directory or output, not even inside the recorded
// events' data (Save removes those keys).
package state
