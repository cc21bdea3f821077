package control

import (
	"errors"
	"fmt"
)

// Error codes carried on the wire.
const (
	CodeBadRequest       = "bad_request"
	CodeUnknownCommand   = "unknown_command"
	CodeNotFound         = "not_found"
	CodeDeployInProgress = "deploy_in_progress"
	CodeConflict         = "conflict"
	CodeShuttingDown     = "shutting_down"
	CodeFailed           = "failed"
)

// Error is an error that crosses the socket with a code.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Is lets errors.Is(err, ErrNotFound) match any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is; their Message is empty on purpose (see Is).
var (
	ErrBadRequest       = &Error{Code: CodeBadRequest}
	ErrUnknownCommand   = &Error{Code: CodeUnknownCommand}
	ErrNotFound         = &Error{Code: CodeNotFound}
	ErrDeployInProgress = &Error{Code: CodeDeployInProgress}
	ErrConflict         = &Error{Code: CodeConflict}
	ErrShuttingDown     = &Error{Code: CodeShuttingDown}
)

// Errorf builds an *Error with a code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// asError returns err as the *Error the server sends for it: err itself
// when it is (or wraps) a coded *Error with a message, the code with err's
// full text when it wraps a sentinel, and CodeFailed otherwise.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e
	}
	if e != nil {
		return &Error{Code: e.Code, Message: err.Error()}
	}
	return &Error{Code: CodeFailed, Message: err.Error()}
}
