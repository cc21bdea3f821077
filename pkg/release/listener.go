package release

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
)

// ErrNotListening is returned (wrapped) by CheckListener when nothing
// listens on the address yet.
var ErrNotListening = errors.New("nothing listens")

// Holder is a process that holds a listening socket.
type Holder struct {
	Pid     int
	User    string // the user name, or the uid as a number
	Command string // its command line; "" when unreadable
}

func (h Holder) String() string {
	s := fmt.Sprintf("pid %d (user %s)", h.Pid, h.User)
	if h.Command != "" {
		s += " running " + h.Command
	}
	return s
}

// Foreign is a listener on a release's port that none of the release's
// processes holds.
type Foreign struct {
	Addr netip.AddrPort // what it is bound to
	User string         // the socket's owner: a user name, or the uid as a number
	// Holders are the processes holding it, when the daemon may read them
	// (root may read every process; another user only its own).
	Holders []Holder
}

// ListenerError says that a connection to Addr could reach a listener that
// does not belong to the release: someone else bound the release's port
// (a local user who wants its traffic), so traffic must not switch to it.
type ListenerError struct {
	Addr    string // the upstream address, host:port
	Foreign []Foreign
	// Unreadable lists processes of the release whose descriptors could
	// not be read: one of them may hold a listener counted as foreign.
	Unreadable []int
}

func (e *ListenerError) Error() string {
	var parts []string
	for _, f := range e.Foreign {
		who := fmt.Sprintf("a process of user %s that the daemon may not inspect (as root it would name it)", f.User)
		if len(f.Holders) > 0 {
			hs := make([]string, len(f.Holders))
			for i, h := range f.Holders {
				hs[i] = h.String()
			}
			who = strings.Join(hs, " and ")
		}
		where := e.Addr
		if f.Addr.String() != e.Addr {
			where = fmt.Sprintf("a listener on %s (it takes connections to %s)", f.Addr, e.Addr)
		}
		parts = append(parts, fmt.Sprintf("%s is held by %s", where, who))
	}
	msg := strings.Join(parts, "; ") + ", not by a process of the release; traffic never goes to a listener the release does not own (someone may be trying to take its traffic)"
	if len(e.Unreadable) > 0 {
		msg += fmt.Sprintf(", and the open files of release processes %v could not be read (run the daemon as root or as the app's user)", e.Unreadable)
	}
	return msg + ": stop that process, then deploy again"
}

// CheckListener verifies that the TCP listeners which would accept a
// connection to host:port are all held by processes in pids (the members
// of the release's process trees). It returns nil when they are; an error
// wrapping ErrNotListening when there is none; a *ListenerError naming
// every other holder when some are not; any other error when /proc or the
// host name could not be read. A listener bound to the wildcard address
// counts, and so does one on [::] for an IPv4 host, since it may take
// IPv4 connections too.
func CheckListener(ctx context.Context, host string, port int, pids []int) error {
	targets, err := resolve(ctx, host)
	if err != nil {
		return err
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("check listener: port %d out of range", port)
	}
	all, err := procfs.TCPListeners(uint16(port))
	if err != nil {
		return fmt.Errorf("check listener on %s: %w", net.JoinHostPort(host, strconv.Itoa(port)), err)
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	var candidates []procfs.TCPListener
	for _, l := range all {
		if receives(l.Addr.Addr(), targets) {
			candidates = append(candidates, l)
		}
	}
	if len(candidates) == 0 {
		return fmt.Errorf("%w on %s", ErrNotListening, addr)
	}
	want := make(map[uint64]bool, len(candidates))
	for _, l := range candidates {
		want[l.Inode] = true
	}
	held := map[uint64]bool{}
	var unreadable []int
	for _, pid := range pids {
		found, err := procfs.SocketInodes(pid, want)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // exited since it was listed
		case err != nil:
			unreadable = append(unreadable, pid)
			continue
		}
		for ino := range found {
			held[ino] = true
		}
		if len(held) == len(want) {
			return nil
		}
	}
	e := &ListenerError{Addr: addr, Unreadable: unreadable}
	for _, l := range candidates {
		if held[l.Inode] {
			continue
		}
		e.Foreign = append(e.Foreign, Foreign{Addr: l.Addr, User: userName(l.UID), Holders: holders(l)})
	}
	return e
}

// holders names the processes holding listener l, as far as the daemon
// may read them.
func holders(l procfs.TCPListener) []Holder {
	pids, _ := procfs.SocketHolders(l.Inode, l.UID) // no /proc listing: the socket's owner is still named
	var out []Holder
	for _, pid := range pids {
		h := Holder{Pid: pid, User: userName(l.UID)}
		if uid, err := procfs.UID(pid); err == nil {
			h.User = userName(uid)
		}
		if st, err := procfs.ReadStat(pid); err == nil {
			h.Command = procfs.Cmdline(pid, st.Comm)
		}
		out = append(out, h)
	}
	return out
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// resolve turns the upstream host into the addresses a connection to it
// may go to.
func resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("check listener: resolve %s: %w", host, err)
	}
	out := make([]netip.Addr, len(as))
	for i, a := range as {
		out[i] = a.Unmap()
	}
	return out, nil
}

// receives reports whether a listener bound to bound may accept a
// connection to one of targets: the same address, the wildcard of its
// family, [::] for an IPv4 target (a dual-stack socket), or any listener
// at all when a target is itself a wildcard.
func receives(bound netip.Addr, targets []netip.Addr) bool {
	b := bound.Unmap()
	for _, t := range targets {
		switch {
		case t.IsUnspecified(), b == t:
			return true
		case b.IsUnspecified() && (b.Is4() == t.Is4() || bound.Is6()):
			return true
		}
	}
	return false
}

// WaitListener waits until something listens on host:port and then checks
// it with CheckListener (pids is called before each look, so it sees the
// release's newest members). It is the readiness test of a proxied process
// without a health check: traffic switches only once its listener exists
// and belongs to it. It fails with an error wrapping ErrNotListening when
// nothing listens within timeout, with ErrExited when exited is closed
// first, or when ctx ends.
func WaitListener(ctx context.Context, host string, port int, timeout time.Duration, pids func() []int, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	pause := firstPause
	began := time.Now()
	for {
		select {
		case <-exited:
			return ErrExited
		default:
		}
		err := CheckListener(ctx, host, port, pids())
		if !errors.Is(err, ErrNotListening) {
			return err
		}
		wait := min(pause, time.Until(deadline))
		if wait <= 0 {
			return fmt.Errorf("%w within %v", err, timeout)
		}
		if err := waitBetweenProbes(ctx, wait, exited); err != nil {
			return err
		}
		if time.Since(began) >= fastPhase {
			pause = min(pause*2, 250*time.Millisecond)
		}
	}
}
