package main

import (
	"errors"
)

// Exit codes, one table for every command (documented in docs/cli.md).
const (
	exitOK          = 0
	exitFailed      = 1 // the command ran and found problems, or the daemon returned an error
	exitUsage       = 2 // bad flags or arguments
	exitUnreachable = 3 // no daemon answers on the control socket
)

// exitError carries an exit code. An empty message means the command already
// printed everything the user needs (e.g. validate's issue list).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErrorf(msg string) error { return &exitError{code: exitUsage, msg: msg} }

// silentFailure ends a command with exit 1 and no extra line.
var silentFailure = &exitError{code: exitFailed}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailed
}
