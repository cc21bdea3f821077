package systemd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrFDStoreFull is Store's answer when the unit's FileDescriptorStoreMax=
// has no room left for the descriptors: systemd would drop (and close)
// them without telling the sender, so FDStore counts for it.
var ErrFDStoreFull = errors.New("fd store full (FileDescriptorStoreMax=)")

// FDStore sends descriptors to systemd's fd store (sd_pid_notify_with_fds
// with FDSTORE=1 and FDNAME=), where they stay open across restarts of the
// service and come back to its next start in LISTEN_FDS/LISTEN_FDNAMES,
// and removes them (FDSTOREREMOVE=1). It keeps the set of names stored, so
// it can refuse what would not fit and remove everything at a stop. Its
// methods are safe for concurrent use.
type FDStore struct {
	addr *net.UnixAddr
	max  int

	mu    sync.Mutex
	conn  *net.UnixConn
	names map[string]struct{}
}

// NewFDStore returns a store for a service whose FileDescriptorStoreMax=
// is max, holding stored (the names this start got back). It returns nil
// when NOTIFY_SOCKET is unset: not run by systemd, no store.
func NewFDStore(max int, stored []string) (*FDStore, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil, nil
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("fd store: %w", err)
	}
	s := &FDStore{addr: &net.UnixAddr{Name: path, Net: "unixgram"}, max: max, conn: conn, names: map[string]struct{}{}}
	for _, n := range stored {
		s.names[n] = struct{}{}
	}
	return s, nil
}

// Max is the unit's FileDescriptorStoreMax=, as given to NewFDStore.
func (s *FDStore) Max() int { return s.max }

// Len is how many descriptors are stored.
func (s *FDStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.names)
}

// Store sends files to the store, files[i] named names[i] (printable, no
// ':', at most 255 characters), all or none: ErrFDStoreFull when they
// would not fit, and a failed send removes those already sent. The caller
// still owns files.
func (s *FDStore) Store(names []string, files []*os.File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.names)+len(names) > s.max {
		return ErrFDStoreFull
	}
	for i, f := range files {
		if err := s.sendFD(names[i], f); err != nil {
			s.removeLocked(names[:i])
			return fmt.Errorf("fd store %s: %w", names[i], err)
		}
		s.names[names[i]] = struct{}{}
	}
	return nil
}

func (s *FDStore) sendFD(name string, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Control(func(fd uintptr) {
		_, _, werr = s.conn.WriteMsgUnix([]byte("FDSTORE=1\nFDNAME="+name), unix.UnixRights(int(fd)), s.addr)
	})
	return errors.Join(err, werr)
}

// Remove makes systemd close and forget the descriptors named names.
func (s *FDStore) Remove(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(names)
}

func (s *FDStore) removeLocked(names []string) {
	for _, n := range names {
		// A lost removal leaves the descriptor to the next start, which
		// finds it and closes it; nothing to report here.
		_, _, _ = s.conn.WriteMsgUnix([]byte("FDSTOREREMOVE=1\nFDNAME="+n), nil, s.addr)
		delete(s.names, n)
	}
}

// RemoveAll removes every descriptor stored: a stop, after which nothing
// may come back to the next start.
func (s *FDStore) RemoveAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.names))
	for n := range s.names {
		names = append(names, n)
	}
	s.removeLocked(names)
}

// Close releases the store's socket; the stored descriptors stay stored.
func (s *FDStore) Close() error { return s.conn.Close() }

// FDStoreMax reads the daemon unit's FileDescriptorStoreMax= over D-Bus;
// 0 without a daemon unit.
func (r *Runner) FDStoreMax(ctx context.Context) (int, error) {
	if r.daemon == "" {
		return 0, nil
	}
	p, err := r.conn.GetUnitTypePropertyContext(ctx, r.daemon, "Service", "FileDescriptorStoreMax")
	if err != nil {
		return 0, fmt.Errorf("read FileDescriptorStoreMax of %s: %w", r.daemon, err)
	}
	n, ok := p.Value.Value().(uint32)
	if !ok {
		return 0, fmt.Errorf("FileDescriptorStoreMax of %s is %s, not a number", r.daemon, p.Value)
	}
	return int(n), nil
}
