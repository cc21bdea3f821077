// Package process supervises one managed child: it starts it through a
// Runner, captures its output, stops it with the configured stop sequence,
// restarts it after a crash under a restart policy, and watches its memory.
//
// A Process is safe for concurrent use. Start, Stop and Restart are
// serialized per process; Status, Logs and Exited never wait for them.
// Every goroutine a Process starts ends once Stop has returned.
package process
