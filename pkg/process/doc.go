// Package process supervises one managed child process: it starts the child
// through a Runner, keeps its recent output, stops its whole process group
// with the configured stop sequence, restarts it after a crash under a
// restart policy, and watches the group's memory.
//
// A Process is safe for concurrent use. Start, Stop and Restart (and the
// automatic crash and memory restarts) take turns; Status, Logs, ID and Exited
// never wait for them. A Process reports what happens through an events.Sink
// and through returned errors; it logs nothing itself.
//
// The package reads /proc for group membership and memory, so it is meant for
// Linux.
package process
