// Package supervisor is the core of rollbridged: it owns the releases, the
// daemon-wide services and the singletons, and runs deploy, rollback, stop,
// restart and shutdown.
//
// Concurrency: mutating commands are serialized by an operation slot that is
// taken without waiting — a second deploy while one runs fails at once with
// ErrDeployInProgress naming the running one. The state they mutate is
// guarded by a mutex held only for short, non-blocking sections, so status,
// logs and events never wait behind a health check or a process stop.
// Retired releases drain in background goroutines owned by the Supervisor and
// waited for by Shutdown.
package supervisor
