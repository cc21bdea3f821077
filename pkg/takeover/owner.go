package takeover

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// Client returns a control client for the socket at path that trusts,
// besides root and the caller, a daemon running as cfg's control.owner
// (see control.Client). A control.owner unknown on this host adds nobody.
func Client(path string, cfg *config.Config) *control.Client {
	c := &control.Client{Path: path}
	if o := cfg.Control.Owner; o != nil {
		if uid, err := ownerUID(*o); err == nil {
			c.TrustUIDs = []int{uid}
		}
	}
	return c
}

// checkSocketOwner refuses a control socket that belongs to a user other
// than root, uid (the caller) or the configured control.owner. Cleanup
// sends what answers there a shutdown and trusts its status; in a shared
// directory such as /tmp any user could have put a socket at that path, and
// its answers would steer what Cleanup stops. A missing path is fine.
func checkSocketOwner(path string, uid int, owner *config.IDOrName) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect the control socket %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil // not a Unix file system: nothing to compare
	}
	got := int(st.Uid)
	if got == 0 || got == uid {
		return nil
	}
	if owner != nil {
		if want, err := ownerUID(*owner); err == nil && want == got {
			return nil
		}
	}
	return fmt.Errorf("the control socket %s belongs to %s, which is neither root nor you (%s); refusing to talk to it. "+
		"if the daemon runs as that user, set control.owner to it; otherwise remove the file",
		path, userName(got), userName(uid))
}

// ownerUID resolves control.owner to a uid.
func ownerUID(v config.IDOrName) (int, error) {
	if v.Name == "" {
		return v.ID, nil
	}
	u, err := user.Lookup(v.Name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(u.Uid)
}

// userName is "name (uid N)", or "uid N" for a uid without a name.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}
