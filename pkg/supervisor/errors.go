package supervisor

import (
	"errors"
	"fmt"
)

// The kinds of refusal a command can meet. Callers branch on them with
// errors.Is; the daemon maps each to its wire code in one place.
var (
	// ErrNotFound: the named release or process does not exist (or is no
	// longer retained).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request contradicts the current state (rolling back
	// to the active release, stopping a stopped one, restarting the proxied
	// process in place).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request itself is wrong (a release id out of its character set).
	ErrInvalid = errors.New("invalid request")
	// ErrBusy: another mutating command runs; the message names it.
	ErrBusy = errors.New("another command is running")
	// ErrShuttingDown: the supervisor is stopping and takes no new commands.
	ErrShuttingDown = errors.New("the daemon is shutting down")
	// ErrRecorded marks a failure the supervisor has already recorded as a
	// "deploy failed" event, with the details only it knows (the output,
	// which release stays active): whoever reports failures to the event
	// history must not record it again.
	ErrRecorded = errors.New("already recorded")
)

// recorded wraps err with ErrRecorded; its message is err's.
func recorded(err error) error { return recordedError{err} }

type recordedError struct{ err error }

func (e recordedError) Error() string   { return e.err.Error() }
func (e recordedError) Unwrap() []error { return []error{e.err, ErrRecorded} }

// refusal is an error of one of the kinds above with a message for people.
type refusal struct {
	kind error
	msg  string
}

func (e *refusal) Error() string { return e.msg }

// Unwrap lets errors.Is(err, ErrNotFound) and friends match.
func (e *refusal) Unwrap() error { return e.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}
