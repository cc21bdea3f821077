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
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// Listeners are the two sockets the daemon serves. A listener passed in
// (socket activation) is used as is; a nil one is bound from the config.
type Listeners struct {
	Proxy   net.Listener
	Control net.Listener
	// ControlOwned is true when the daemon created the control socket file
	// and so must remove it; an inherited socket belongs to its creator.
	ControlOwned bool
}

// openListeners binds whatever was not inherited.
func openListeners(ctx context.Context, cfg *config.Config, in Listeners) (Listeners, error) {
	out := in
	if out.Proxy == nil {
		ln, err := net.Listen("tcp", cfg.ProxyAddr())
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return out, fmt.Errorf("proxy address %s is already in use; stop whatever holds it (ss -ltnp 'sport = :%d') or change proxy.port", cfg.ProxyAddr(), cfg.Proxy.Port)
			}
			return out, fmt.Errorf("bind proxy %s: %w", cfg.ProxyAddr(), err)
		}
		out.Proxy = ln
	}
	if out.Control == nil {
		ln, err := listenControl(ctx, cfg)
		if err != nil {
			if in.Proxy == nil {
				_ = out.Proxy.Close() // we bound it a moment ago
			}
			return in, err
		}
		out.Control = ln
		out.ControlOwned = true
	}
	return out, nil
}

// listenControl binds control.path after dealing with whatever is there: a
// stale socket file is removed, a live daemon or another program is an error.
func listenControl(ctx context.Context, cfg *config.Config) (net.Listener, error) {
	path := cfg.Control.Path
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("control socket directory %s does not exist; create it or set a different control.path", filepath.Dir(path))
	}
	if err := clearControlPath(ctx, path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("bind control socket %s: %w", path, err)
	}
	// We remove the file ourselves, after shutdown finished, so the
	// "shutdown" answer can promise the socket is gone.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := applySocketPermissions(path, cfg.Control); err != nil {
		_ = ln.Close()
		_ = os.Remove(path)
		return nil, err
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

// applySocketPermissions applies control.mode/owner/group to the socket file.
func applySocketPermissions(path string, c config.Control) error {
	if c.Mode != nil {
		if err := os.Chmod(path, os.FileMode(*c.Mode)); err != nil {
			return fmt.Errorf("chmod control socket %s to %o: %w", path, *c.Mode, err)
		}
	}
	if c.Owner == nil && c.Group == nil {
		return nil
	}
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
	return nil
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
	if inherited.Control != nil {
		got := inherited.Control.Addr().String()
		if inherited.Control.Addr().Network() != "unix" || got != cfg.Control.Path {
			return fmt.Errorf("the inherited control socket is %s but the config says control.path %s; make them agree (rollbridgectl systemd units prints the socket drop-in for this config)",
				got, cfg.Control.Path)
		}
	}
	return nil
}
