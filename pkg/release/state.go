package release

import "fmt"

// State is where a release is in its life. The legal moves between states
// are listed once, in CanBecome; the supervisor checks every change against
// it.
type State string

// Release states, with the spec's names.
const (
	Starting State = "starting"
	// Canary (an extension) takes a share of new clients next to the
	// active release (rollbridgectl deploy --canary).
	Canary   State = "canary"
	Active   State = "active"
	Draining State = "draining"
	Stopped  State = "stopped"
	Failed   State = "failed"
)

func (s State) String() string { return string(s) }

// Live reports whether the release still has (or may have) running processes.
func (s State) Live() bool {
	return s == Starting || s == Canary || s == Active || s == Draining
}

// CanBecome reports whether a release in state s may move to next. This is
// the one transition table:
//
//	starting -> active    its health check passed and traffic switched to it
//	starting -> failed    its deploy failed; its processes are stopped
//	starting -> canary    its health check passed and it takes a share of new clients
//	canary   -> active    promoted: it takes all traffic
//	canary   -> draining  aborted: it takes no new traffic
//	canary   -> stopped   stopped by a command or at shutdown
//	active   -> draining  a newer release took the traffic
//	active   -> stopped   stopped by a command or at shutdown
//	draining -> stopped   its connections are gone, the drain timed out, or it was stopped
//	stopped  -> starting  a rollback relaunches it
//	failed   -> stopped   the failed start was a rollback's relaunch: the
//	                      release is retained as it was before
//
// A failed release is never retained otherwise (as in the Node original),
// so nothing moves from failed to starting.
//
// Every other pair, staying in the same state and any unknown state
// included, is illegal.
func (s State) CanBecome(next State) bool {
	switch s {
	case Starting:
		return next == Active || next == Failed || next == Canary
	case Canary:
		return next == Active || next == Draining || next == Stopped
	case Active:
		return next == Draining || next == Stopped
	case Draining:
		return next == Stopped
	case Stopped:
		return next == Starting
	case Failed:
		return next == Stopped
	}
	return false
}

// Transition returns nil if from may become to, and a *TransitionError if
// not.
func Transition(from, to State) error {
	if !from.CanBecome(to) {
		return &TransitionError{From: from, To: to}
	}
	return nil
}

// TransitionError is an illegal state change. It means a bug in the caller,
// never bad user input; the change it describes was not made.
type TransitionError struct {
	From, To State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("illegal release state change from %q to %q", e.From, e.To)
}
