package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"github.com/rollbridge/rollbridge-go/pkg/systemd"
)

// environment checks what a daemon for cfg needs on this host. managed
// says systemd holds the sockets for it.
func environment(ctx context.Context, cfg *config.Config, managed bool) []Check {
	sock := cfg.Control.Path
	client := &control.Client{Path: sock}
	held := client.Listening(ctx)
	checks := []Check{controlSocket(ctx, cfg, client, managed, held), writableDir("control socket directory", filepath.Dir(sock)),
		proxyPort(cfg, managed)}
	if cfg.StatePath == "" {
		return checks
	}
	return append(checks, writableDir("state path directory", filepath.Dir(cfg.StatePath)), orphans(ctx, cfg.StatePath, state.LookupUIDs(cfg.Users()), held))
}

func controlSocket(ctx context.Context, cfg *config.Config, client *control.Client, managed, held bool) Check {
	const name = "control socket"
	sock := client.Path
	switch {
	case managed:
		return pass(name, "%s belongs to %s (systemd passes it to the daemon)", sock, systemd.ControlSocketUnit(cfg.Application))
	case !held:
		if _, err := os.Stat(sock); err == nil {
			return pass(name, "no daemon running; a stale socket file at %s will be removed when the daemon starts", sock)
		}
		return pass(name, "no daemon running; %s is free to bind", sock)
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := client.Status(qctx)
	if err != nil {
		return fail(name, "%s is held by another program", sock)
	}
	active := "none"
	if st.ActiveReleaseID != nil {
		active = *st.ActiveReleaseID
	}
	return fail(name, "a rollbridge daemon for %q already runs on %s (active release: %s); a second one could not start", st.Application, sock, active)
}

func proxyPort(cfg *config.Config, managed bool) Check {
	const name = "proxy port"
	addr := cfg.ProxyAddr()
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		_ = ln.Close() // a probe only
	}
	switch {
	case managed:
		return pass(name, "%s belongs to %s (systemd passes it to the daemon)", addr, systemd.ProxySocketUnit(cfg.Application))
	case err == nil:
		return pass(name, "%s is available", addr)
	case errors.Is(err, syscall.EADDRINUSE):
		return fail(name, "%s is already in use (ss -ltnp 'sport = :%d' shows by whom)", addr, cfg.Proxy.Port)
	}
	return fail(name, "%s cannot be bound: %v", addr, err)
}

// writableDir proves a directory writable by creating and removing a file.
func writableDir(name, dir string) Check {
	f, err := os.CreateTemp(dir, ".rollbridge-doctor-*")
	if err != nil {
		return fail(name, "%s is not writable: %v", dir, err)
	}
	_ = f.Close()
	_ = os.Remove(f.Name()) // our own probe file
	return pass(name, "%s is writable", dir)
}

// orphans looks for processes of a previous daemon in the state file
// (state.Snapshot.FindOrphans: recorded, or carrying the run token of an
// instance it records; uids are the configured process users); held says
// something listens on the control socket (then the file is its). A
// state file the Node original wrote is read as well: its processes that
// still run are what a switch-over must stop before rollbridged takes over.
func orphans(ctx context.Context, statePath string, uids []uint32, held bool) Check {
	const name = "orphaned processes"
	snap, err := state.Read(statePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return pass(name, "no state file at %s: nothing left behind", statePath)
	case err != nil:
		return fail(name, "%v", err)
	case snap.Node != nil:
		return nodeOrphans(ctx, name, statePath, snap)
	case held:
		return pass(name, "the state file belongs to the running daemon")
	}
	left := snap.FindOrphans(uids)
	if len(left) == 0 {
		return pass(name, "no process of a previous daemon is still running")
	}
	c := fail(name, "still running from a previous daemon: %s", listOrphans(left))
	c.Fix = "check them (a pid may have been reused), then rollbridgectl recover --force"
	return c
}

func listOrphans(left []state.Orphan) string {
	list := make([]string, len(left))
	for i, o := range left {
		extra := ""
		if o.ReleaseID != "" {
			extra = ", release " + o.ReleaseID
		}
		if o.Unrecorded {
			extra += ", not in the state file: found by its run token"
		}
		list[i] = fmt.Sprintf("%s (pid %d%s)", o.ID, o.Pid, extra)
	}
	return strings.Join(list, ", ")
}

// nodeOrphans judges a state file of the Node original.
func nodeOrphans(ctx context.Context, name, statePath string, snap *state.Snapshot) Check {
	nodeUp := snap.Node.ControlPath != "" && (&control.Client{Path: snap.Node.ControlPath}).Listening(ctx)
	left := snap.Orphans()
	switch {
	case nodeUp:
		c := fail(name, "%s is the Node rollbridge daemon's state file, and that daemon still runs on %s", statePath, snap.Node.ControlPath)
		c.Fix = "switch traffic to rollbridged first, then stop the Node daemon (rollbridge shutdown, or its unit); give rollbridged another statePath meanwhile"
		return c
	case len(left) == 0:
		return pass(name, "%s is a Node rollbridge state file; none of its processes is still running", statePath)
	}
	c := fail(name, "still running from the Node rollbridge daemon (state file %s): %s", statePath, listOrphans(left))
	c.Fix = "check them, then rollbridgectl recover --force (with --state-path " + statePath + " when the config names another file)"
	return c
}
