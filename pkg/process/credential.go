package process

import (
	"fmt"
	"os"
	"syscall"
)

// Credential is the user and group a process and its lifecycle hooks run
// as. A nil *Credential in a Spec means the daemon's own.
type Credential struct {
	User  string // as configured (a name or a number), for messages
	Group string // as configured, or the user's primary group
	UID   uint32
	GID   uint32
}

// sysCredential is what exec needs to run a child as c: nil when c is nil
// or is the daemon's own user and group (nothing to switch, so a daemon
// that is not root runs it too). Switching to another user takes root;
// without it the error says so before anything starts. Supplementary
// groups are cleared: the process has the one group c names.
func sysCredential(c *Credential) (*syscall.Credential, error) {
	if c == nil || (int(c.UID) == os.Geteuid() && int(c.GID) == os.Getegid()) {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("run as user %s (uid %d) and group %s (gid %d): the daemon runs as uid %d, not root, so it can only run processes as itself; leave user and group unset or run the daemon as root",
			c.User, c.UID, c.Group, c.GID, os.Geteuid())
	}
	return &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: []uint32{}}, nil
}
