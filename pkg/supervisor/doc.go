// Package supervisor is the core of rollbridged: it owns the releases, the
// daemon-wide services and the singletons, and runs deploy, rollback, stop,
// restart and shutdown.
//
// # One owner of the state
//
// Every piece of mutable state — the release records and their launches,
// the active release, the services, the singletons and the slot of the
// running command — belongs to one table value (table.go). Its methods are
// the only writers; each holds the table's mutex for one short section that
// never blocks and never calls out, and no lock is ever held across a
// method boundary. Every change of a release's state goes through one
// method that checks it against the transition table in package release
// (release.State.CanBecome); an illegal change is refused with a
// *release.TransitionError. Readers (Snapshot, Summary, Logs,
// PersistSnapshot) copy what they need in one section and then read the
// processes, which lock for themselves, so they never wait for a deploy's
// health check or a process's stop sequence.
//
// Why a table and not a goroutine that owns the state and takes commands as
// messages: a deploy spends nearly all its time in blocking steps (starting
// processes, a health check that may take healthTimeoutMs, stop sequences
// of up to gracefulStopMs). Those steps cannot run inside an owner loop
// without stalling status, so they would run outside it and report back by
// message, which gives the same short critical sections as the table plus a
// message protocol, reply channels and a loop that must never be blocked by
// mistake. The table keeps the short sections and drops the protocol.
//
// # Mutating commands
//
// Deploy, Rollback, Stop, Restart and Shutdown are serialized by the
// running-command slot, taken without waiting: a second command while one
// runs fails at once with ErrBusy naming the running one, and everything
// after Shutdown fails with ErrShuttingDown.
//
// # Drains and rollbacks
//
// A retired release drains in a goroutine owned by the Supervisor (Shutdown
// waits for it), which stops the release when the drain ends. Each launch
// of a release record is a separate run, and the drain goroutine holds the
// run it drains, never "the record's processes". A rollback that relaunches
// a draining release first stops its current run and waits for that stop
// to finish, and the table refuses to relaunch a record whose run has not
// finished stopping. A drain that ends after the relaunch therefore finds
// its own run already stopped and changes nothing: the relaunched release
// cannot be stopped by a stale drain, by construction.
package supervisor
