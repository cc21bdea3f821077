package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"golang.org/x/sys/unix"
)

// Listeners are the sockets the daemon serves. A listener passed in
// (socket activation) is used as is; a nil one is bound from the config.
type Listeners struct {
	Proxy   net.Listener
	Control net.Listener
	// Metrics serves Prometheus; bound only when the config has metrics.
	Metrics net.Listener
	// ControlOwned is true when the daemon created the control socket file
	// and so must remove it; an inherited socket belongs to its creator.
	ControlOwned bool

	// lock is the control path's lock file, held (flock) from before the
	// daemon binds anything until after it removed the socket file; nil
	// for an inherited control socket, which systemd already serialises.
	lock *os.File
}

// openListeners binds whatever was not inherited. When it binds the
// control socket, it first takes the control path's lock, so that of two
// daemons started at once on one path, one binds and the other fails
// before it has bound anything.
func openListeners(ctx context.Context, cfg *config.Config, in Listeners) (Listeners, error) {
	out := in
	if out.Control == nil {
		lock, err := lockControl(ctx, cfg.Control.Path)
		if err != nil {
			return in, err
		}
		out.lock = lock
	}
	if out.Proxy == nil {
		ln, err := net.Listen("tcp", cfg.ProxyAddr())
		if err != nil {
			out.unlock()
			if errors.Is(err, syscall.EADDRINUSE) {
				return in, fmt.Errorf("proxy address %s is already in use; stop whatever holds it (ss -ltnp 'sport = :%d') or change proxy.port", cfg.ProxyAddr(), cfg.Proxy.Port)
			}
			return in, fmt.Errorf("bind proxy %s: %w", cfg.ProxyAddr(), err)
		}
		out.Proxy = ln
	}
	if out.Control == nil {
		ln, err := listenControl(ctx, cfg)
		if err != nil {
			if in.Proxy == nil {
				_ = out.Proxy.Close() // we bound it a moment ago
			}
			out.unlock()
			return in, err
		}
		out.Control = ln
		out.ControlOwned = true
	}
	if out.Metrics == nil && cfg.Metrics != nil {
		ln, err := net.Listen("tcp", cfg.MetricsAddr())
		if err != nil {
			out.closeBound(in, cfg.Control.Path)
			if errors.Is(err, syscall.EADDRINUSE) {
				return in, fmt.Errorf("metrics address %s is already in use; stop whatever holds it (ss -ltnp 'sport = :%d') or change metrics.port", cfg.MetricsAddr(), cfg.Metrics.Port)
			}
			return in, fmt.Errorf("bind metrics %s: %w", cfg.MetricsAddr(), err)
		}
		out.Metrics = ln
	}
	return out, nil
}

// closeBound undoes openListeners' own binds (not what was passed in).
func (l *Listeners) closeBound(in Listeners, controlPath string) {
	if in.Proxy == nil {
		_ = l.Proxy.Close()
	}
	if in.Control == nil {
		_ = l.Control.Close()
		l.removeControl(controlPath)
	}
	l.unlock()
}

// removeControl removes the control socket file if the daemon created it,
// and only then releases the control path's lock: a daemon that takes
// the lock next finds the path free, never a file that is about to vanish.
// Call it once the control listener is closed.
func (l *Listeners) removeControl(path string) {
	if l.ControlOwned {
		_ = os.Remove(path) // may already be gone; nothing to do then
	}
	l.unlock()
}

// unlock releases the control path's lock, if held. The lock file stays:
// removing it would let one daemon lock the old file while another
// creates and locks a new one.
func (l *Listeners) unlock() {
	if l.lock != nil {
		_ = l.lock.Close() // closing the descriptor releases the flock
		l.lock = nil
	}
}

// lockPath is the lock file of a control socket, beside it.
func lockPath(socket string) string { return socket + ".lock" }

// lockControl takes an exclusive flock on the control socket's lock file
// and writes this daemon's pid into it. It fails without waiting when
// another process holds the lock, naming that process. The directory
// must be one in which no other user can replace the socket or the lock
// file (checkControlDir), or the lock would prove nothing.
func lockControl(ctx context.Context, socket string) (*os.File, error) {
	dir := filepath.Dir(socket)
	if err := makeRuntimeDir(dir, socket); err != nil {
		return nil, err
	}
	if err := checkControlDir(dir); err != nil {
		return nil, err
	}
	path := lockPath(socket)
	// O_NOFOLLOW: a symlink planted there must not make us create or
	// truncate a file elsewhere.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("control socket lock file %s is a symlink; remove it", path)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("cannot create files in the control socket directory %s (permission denied): run the daemon as the user who owns it, or set control.path to a socket in a directory this user owns", dir)
		}
		return nil, fmt.Errorf("open control socket lock file %s: %w", path, err)
	}
	fail := func(err error) (*os.File, error) {
		_ = f.Close() // not ours to keep
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("control socket lock file %s: %w", path, err))
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !st.Mode().IsRegular() || !ok {
		return fail(fmt.Errorf("control socket lock file %s is not a regular file; remove it", path))
	}
	if euid := os.Geteuid(); int(sys.Uid) != euid {
		// Someone else made it (or an earlier daemon ran as another
		// user): whoever owns it could hold the lock to keep us out.
		return fail(fmt.Errorf("control socket lock file %s belongs to uid %d, not to this daemon's user (uid %d); remove it if no daemon of that user runs on %s", path, sys.Uid, euid, socket))
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fail(fmt.Errorf("lock control socket lock file %s: %w", path, err))
		}
		return fail(heldError(ctx, socket, path, sys))
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0) // for people; heldError reads /proc/locks first
	}
	return f, nil
}

// heldError says which process holds the lock of socket's lock file
// (path, with stat st), and what it serves if it answers already.
func heldError(ctx context.Context, socket, path string, st *syscall.Stat_t) error {
	pid := lockHolder(st)
	if pid == 0 {
		// Not in /proc/locks (another pid namespace): the holder wrote
		// its pid into the file right after taking the lock.
		if b, err := os.ReadFile(path); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	with, kill := "", "stop it"
	if pid > 0 {
		with, kill = fmt.Sprintf(" with pid %d", pid), fmt.Sprintf("stop it (kill %d)", pid)
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if s, err := (&control.Client{Path: socket}).Status(qctx); err == nil && s.Application != "" {
		active := "none"
		if s.ActiveReleaseID != nil {
			active = *s.ActiveReleaseID
		}
		return fmt.Errorf("a rollbridge daemon for application %q is already running on %s (active release: %s)%s; run `rollbridgectl status` to inspect it or `rollbridgectl shutdown` to stop it, or set a different control.path",
			s.Application, socket, active, with)
	}
	return fmt.Errorf("another rollbridge daemon%s is starting or running on %s (it holds the lock %s); wait for it and use it, %s, or set a different control.path",
		with, socket, path, kill)
}

// lockHolder finds the pid holding a flock on the file with stat st in
// /proc/locks ("1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"), or 0.
func lockHolder(st *syscall.Stat_t) int {
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// A waiting lock is listed as "1: -> FLOCK ..."; it holds nothing.
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != id {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}

// makeRuntimeDir creates config.RuntimeDir, the directory of the default
// control.path, when it is dir and does not exist yet: root's daemon on a
// host where tmpfiles.d has not run (a container, a manual install). It
// is made 0755 so that deploy users can reach the socket inside, whose
// own mode decides who may connect. Only that one directory is created:
// a missing directory the config names is more likely a typo, and stays
// an error (checkControlDir). A user who may not create it gets told what
// to do instead; the daemon never falls back to a shared directory such
// as /tmp on its own.
func makeRuntimeDir(dir, socket string) error {
	if dir != config.RuntimeDir {
		return nil
	}
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err == nil {
		// Whatever the umask: 0755 is what tmpfiles.d would have made.
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("chmod control socket directory %s: %w", dir, err)
		}
		return nil
	}
	return fmt.Errorf("control socket directory %s does not exist and cannot be created (%w); it holds the default control.path %s: "+
		"create it as root (install -d -m 0755 %s, or systemd-tmpfiles --create with packaging/systemd/rollbridge.tmpfiles.conf), "+
		"or set control.path to a socket in a directory you own, e.g. control: {path: '/home/me/.rollbridge/%s'}",
		dir, unwrapPath(err), socket, dir, filepath.Base(socket))
}

// unwrapPath is the system's reason of a *os.PathError (the path is
// already in the message around it).
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkControlDir refuses a control socket directory in which a user
// other than root and the daemon's own could replace the socket or its
// lock file: owned by such a user, or writable by group or others without
// the sticky bit (with it, as on /tmp, others may add files but not
// rename or remove ours).
func checkControlDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return fmt.Errorf("control socket directory %s does not exist; create it or set a different control.path", dir)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	euid := os.Geteuid()
	if sys.Uid != 0 && int(sys.Uid) != euid {
		return fmt.Errorf("control socket directory %s belongs to uid %d, who could replace the socket of this daemon (uid %d); use a directory owned by root or by the daemon's user, such as /run/rollbridge", dir, sys.Uid, euid)
	}
	if st.Mode().Perm()&0o022 != 0 && st.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("control socket directory %s is writable by other users (mode %04o) without the sticky bit, so they could replace the socket or its lock file; remove group and other write permission (chmod go-w) or set the sticky bit (chmod +t)", dir, st.Mode().Perm())
	}
	return nil
}

// listenControl binds control.path after dealing with whatever is there: a
// stale socket file is removed, a live daemon or another program is an error.
//
// The socket file is never reachable by more users than control.mode,
// owner and group allow, not even for a moment, whatever the umask: the
// socket's own mode is set to 0 before bind, so bind creates the file with
// no permission bits at all, and only after the owner and group were set
// does the file get its configured mode. (Linux gives the new file the
// mode of the socket's inode, less the umask.) A chmod after an ordinary
// bind, as before, left a window in which, with umask 000, anyone could
// connect.
func listenControl(ctx context.Context, cfg *config.Config) (net.Listener, error) {
	path := cfg.Control.Path
	if err := clearControlPath(ctx, path); err != nil {
		return nil, err
	}
	c := cfg.Control
	restrict := c.Mode != nil || c.Owner != nil || c.Group != nil
	var lc net.ListenConfig
	if restrict {
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) { err = syscall.Fchmod(int(fd), 0) }); cerr != nil {
				return cerr
			}
			if err != nil {
				return fmt.Errorf("clear the control socket's permissions before bind: %w", err)
			}
			return nil
		}
	}
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("bind control socket %s: %w", path, err)
	}
	// We remove the file ourselves, after shutdown finished, so the
	// "shutdown" answer can promise the socket is gone.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if restrict {
		if err := applySocketPermissions(path, c); err != nil {
			_ = ln.Close()
			_ = os.Remove(path)
			return nil, err
		}
	}
	return ln, nil
}

func clearControlPath(ctx context.Context, path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control.path %s exists and is not a socket; remove it or set a different control.path", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		// Nobody listens: a leftover of a daemon that did not shut down cleanly.
		if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			return fmt.Errorf("remove stale control socket %s: %w", path, rmErr)
		}
		return nil
	}
	_ = conn.Close() // only probing
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if st2, err := (&control.Client{Path: path}).Status(qctx); err == nil && st2.Application != "" {
		active := "none"
		if st2.ActiveReleaseID != nil {
			active = *st2.ActiveReleaseID
		}
		return fmt.Errorf("a rollbridge daemon for application %q is already running on %s (active release: %s); run `rollbridgectl status` to inspect it or `rollbridgectl shutdown` to stop it, or set a different control.path",
			st2.Application, path, active)
	}
	return fmt.Errorf("the control socket %s is already in use by another process; stop that process or set a different control.path", path)
}

// applySocketPermissions gives the socket file, created with mode 0,
// control.owner and control.group, then control.mode (with no mode
// configured, what an ordinary bind would have given: 0777 less the
// umask). Ownership goes first, so that the mode never applies to the
// owner and group the file had before.
//
// The directory is one only root and the daemon's user can change
// (checkControlDir), so path is still the socket just bound.
func applySocketPermissions(path string, c config.Control) error {
	if c.Owner != nil || c.Group != nil {
		uid, gid := -1, -1
		if c.Owner != nil {
			id, err := resolveID(*c.Owner, true)
			if err != nil {
				return err
			}
			uid = id
		}
		if c.Group != nil {
			id, err := resolveID(*c.Group, false)
			if err != nil {
				return err
			}
			gid = id
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("chown control socket %s to %d:%d: %w (the daemon must run as root or as a member of the group)", path, uid, gid, err)
		}
	}
	var mode os.FileMode
	if c.Mode != nil {
		mode = os.FileMode(*c.Mode)
	} else {
		mask, err := umask()
		if err != nil {
			return fmt.Errorf("control socket %s: no control.mode, and the umask to apply instead is unknown: %w", path, err)
		}
		mode = 0o777 &^ mask
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("chmod control socket %s to %o: %w", path, mode, err)
	}
	return nil
}

// umask reads the process's umask from /proc/self/status: setting it to
// read it back would change it for every thread meanwhile.
func umask() (os.FileMode, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				return 0, fmt.Errorf("parse umask %q: %w", v, err)
			}
			return os.FileMode(m) & 0o777, nil
		}
	}
	return 0, errors.New("no Umask line in /proc/self/status")
}

func resolveID(v config.IDOrName, isUser bool) (int, error) {
	if v.Name == "" {
		return v.ID, nil
	}
	if isUser {
		u, err := user.Lookup(v.Name)
		if err != nil {
			return 0, fmt.Errorf("control.owner: unknown user %q: %w", v.Name, err)
		}
		return strconv.Atoi(u.Uid)
	}
	g, err := user.LookupGroup(v.Name)
	if err != nil {
		return 0, fmt.Errorf("control.group: unknown group %q: %w", v.Name, err)
	}
	return strconv.Atoi(g.Gid)
}

// checkInherited refuses sockets from systemd that contradict the config:
// serving another port than the one configured would be a silent surprise.
func checkInherited(cfg *config.Config, inherited Listeners) error {
	if inherited.Proxy != nil {
		got, ok := inherited.Proxy.Addr().(*net.TCPAddr)
		if !ok {
			return fmt.Errorf("the inherited proxy socket is %s %s, not TCP; fix ListenStream= in the proxy socket unit", inherited.Proxy.Addr().Network(), inherited.Proxy.Addr())
		}
		want := net.ParseIP(cfg.Proxy.Host)
		hostOK := want == nil || want.Equal(got.IP) || want.IsUnspecified() && got.IP.IsUnspecified()
		if (cfg.Proxy.Port != 0 && got.Port != cfg.Proxy.Port) || !hostOK {
			return fmt.Errorf("the inherited proxy socket listens on %s but the config says proxy %s; make them agree (rollbridgectl systemd units prints the socket drop-in for this config)",
				got, cfg.ProxyAddr())
		}
	}
	if err := checkInheritedMetrics(cfg, inherited.Metrics); err != nil {
		return err
	}
	if inherited.Control != nil {
		got := inherited.Control.Addr().String()
		if inherited.Control.Addr().Network() != "unix" || got != cfg.Control.Path {
			return fmt.Errorf("the inherited control socket is %s but the config says control.path %s; make them agree (rollbridgectl systemd units prints the socket drop-in for this config)",
				got, cfg.Control.Path)
		}
	}
	return nil
}

// checkInheritedMetrics refuses a metrics socket from systemd that the
// config does not want, or that listens elsewhere than it says.
func checkInheritedMetrics(cfg *config.Config, ln net.Listener) error {
	if ln == nil {
		return nil
	}
	if cfg.Metrics == nil {
		return fmt.Errorf("systemd passed a metrics socket (%s) but the config has no metrics section; add metrics: {host, port} or disable rollbridge-metrics@%s.socket", ln.Addr(), cfg.Application)
	}
	got, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("the inherited metrics socket is %s %s, not TCP; fix ListenStream= in the metrics socket unit", ln.Addr().Network(), ln.Addr())
	}
	want := net.ParseIP(cfg.Metrics.Host)
	hostOK := want == nil || want.Equal(got.IP) || want.IsUnspecified() && got.IP.IsUnspecified()
	if (cfg.Metrics.Port != 0 && got.Port != cfg.Metrics.Port) || !hostOK {
		return fmt.Errorf("the inherited metrics socket listens on %s but the config says metrics %s; make them agree (rollbridgectl systemd units prints the socket drop-in for this config)",
			got, cfg.MetricsAddr())
	}
	return nil
}
