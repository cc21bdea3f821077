// Package runtoken makes the values of ROLLBRIDGE_RUN, the variable every
// managed process (and everything it starts) carries in its environment.
//
// A token is INSTANCE.RUN: INSTANCE is random per daemon start, RUN random
// per run. The daemon tells a run's processes by the whole token (an
// orphan handed to it as child subreaper). rollbridgectl recover, doctor
// and the next daemon, which know the instances a state file records,
// tell every process a crashed daemon started by the INSTANCE prefix —
// also the ones that left their process group and session, or that
// started after the daemon's last state write.
//
// Both parts are random and unguessable, so a token read from a process
// names a daemon instance only if the reader already knows the instance
// (from the 0600 state file). Anyone can put any value in an environment:
// callers must still check who owns a process before acting on it.
package runtoken

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// Env is the variable that carries the token.
const Env = "ROLLBRIDGE_RUN"

// sep separates the instance from the run; neither part contains it.
const sep = "."

// NewInstance returns a new random daemon-instance token: 24 hex digits
// (96 bits). It panics only if the system's random source fails, which
// crypto/rand documents as unrecoverable.
func NewInstance() string { return random() }

// New returns a new token for one run of daemon instance instance. An
// empty instance gives a token of the run alone, which names no instance
// (a runner not tied to a daemon, such as one in a test).
func New(instance string) string {
	if instance == "" {
		return random()
	}
	return instance + sep + random()
}

// Instance returns the instance part of tok, "" when tok has none.
func Instance(tok string) string {
	inst, _, ok := strings.Cut(tok, sep)
	if !ok {
		return ""
	}
	return inst
}

// Valid reports whether instance has the form NewInstance gives: a state
// file read from disk is checked with it before its instances are used.
func Valid(instance string) bool {
	if len(instance) != 2*idBytes {
		return false
	}
	_, err := hex.DecodeString(instance)
	return err == nil
}

const idBytes = 12

func random() string {
	var b [idBytes]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand: it crashes the program instead)
	return hex.EncodeToString(b[:])
}
