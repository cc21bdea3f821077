package config

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxIDLength is the longest release id or revision accepted.
const MaxIDLength = 200

// The rules, in the words error messages use.
const (
	releaseIDRule = "1 to 200 letters, digits, dots, underscores or hyphens, starting with a letter or digit"
	revisionRule  = "1 to 200 letters, digits, dots, underscores, hyphens, slashes, plus or at signs, starting with a letter or digit"
)

// CheckReleaseID returns nil when s may be a release id: 1 to MaxIDLength
// ASCII letters, digits, '.', '_' or '-', the first a letter or digit (the
// Node original's rule for its boot ids). Release ids reach shell commands
// ({{releaseId}}), file names, journal fields and terminals, and in this
// set they mean the same in each.
//
// The error's message starts with s, quoted so that no control character
// reaches a terminal raw, and names the first character that is not
// allowed and its position (counting characters from 1). Callers prefix
// what s is: fmt.Errorf("release id %w", err).
func CheckReleaseID(s string) error { return checkID(s, false) }

// CheckRevision is CheckReleaseID for a revision, which may also contain
// '/', '+' and '@' so that a git branch or tag name (release/1.2,
// v1.0+build, user@topic) fits. Nothing in the set is special to the
// shell.
func CheckRevision(s string) error { return checkID(s, true) }

// IDError says why a release id or revision was refused.
type IDError struct {
	Value  string // as given
	Rule   string // what is allowed
	Reason string // what is wrong with Value
}

func (e *IDError) Error() string {
	return fmt.Sprintf("%s must be %s; %s", quoteShort(e.Value), e.Rule, e.Reason)
}

func checkID(s string, revision bool) error {
	rule := releaseIDRule
	if revision {
		rule = revisionRule
	}
	fail := func(format string, args ...any) error {
		return &IDError{Value: s, Rule: rule, Reason: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return fail("it is empty")
	}
	pos := 0
	for i, r := range s {
		pos++
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		switch {
		case alnum:
		case i == 0:
			return fail("it starts with %s", quoteChar(s, i, r))
		case r == '.' || r == '_' || r == '-':
		case revision && (r == '/' || r == '+' || r == '@'):
		default:
			return fail("%s at position %d is not allowed", quoteChar(s, i, r), pos)
		}
	}
	if len(s) > MaxIDLength {
		return fail("it is %d characters long", len(s))
	}
	return nil
}

// quoteChar quotes the character r at byte offset i of s the way Go
// quotes a rune ('$', '\x1b', 'é'), or names the byte when s is not
// valid UTF-8 there.
func quoteChar(s string, i int, r rune) string {
	if r == utf8.RuneError {
		if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
			return fmt.Sprintf("the byte 0x%02x", s[i])
		}
	}
	return strconv.QuoteRune(r)
}

// quoteShort quotes s with Go's escapes (so control characters show as
// \x1b, never raw), cut to a readable length: an error message must not
// carry a megabyte-long id into a log line.
func quoteShort(s string) string {
	const max = 80
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("… (%d bytes)", len(s))
}
