package takeover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"github.com/rollbridge/rollbridge-go/pkg/systemd"
)

// CleanupAction is what Cleanup did with the daemon on the control socket.
type CleanupAction string

// The actions. The first three are the Node original's values.
const (
	// DaemonActive: a daemon of this application with an active release
	// and the config's proxy answers; nothing else was done.
	DaemonActive CleanupAction = "daemon-active"
	// DaemonStopped: a daemon answered and was shut down (Reason says why);
	// the next deploy --ensure-daemon starts a new one from the config.
	DaemonStopped CleanupAction = "daemon-stopped"
	// NoDaemon: nothing answered on the control socket.
	NoDaemon CleanupAction = "no-daemon-cleaned"
	// DaemonKept: a socket-activated daemon without an active release was
	// left running, since systemd would start it again at once; its
	// orphans (if any) are in its status, not recovered here.
	DaemonKept CleanupAction = "daemon-kept"
)

// CleanupResult is what Cleanup did.
type CleanupResult struct {
	Action CleanupAction `json:"action"`
	// Reason says why the daemon was stopped, kept or left alone.
	Reason           string         `json:"reason,omitempty"`
	RecoveredOrphans []state.Orphan `json:"recoveredOrphans"`
	Screens          []string       `json:"screens"` // GNU Screen sessions that were quit
	Processes        []LegacyStop   `json:"processes"`
}

// LegacySurvivorsError is Cleanup's refusal when legacy processes still run
// after SIGKILL (another user's, say, or respawned by something outside the
// matchers): a deploy now would meet them on its ports or its data.
type LegacySurvivorsError struct {
	Survivors []LegacyStop // Killed is false: they were found afterwards
}

func (e *LegacySurvivorsError) Error() string {
	s := "refusing rollbridge deploy while legacy processes are still running:"
	for _, p := range e.Survivors {
		s += fmt.Sprintf("\n  %d %s", p.Pid, p.Command)
	}
	return s
}

// probeTimeout bounds the status probe of whatever holds the control
// socket: a daemon answers status at once, even during a deploy.
const probeTimeout = 5 * time.Second

// shutdownTimeout bounds the wait for a daemon that was asked to shut down
// to let go of its control socket.
const shutdownTimeout = 30 * time.Second

// Cleanup prepares a host for a deploy, as the Node original's
// predeploy-cleanup does:
//
//  1. It refuses a control socket owned by a user other than root, the
//     caller or control.owner, and anything on it that is not a rollbridge
//     daemon of cfg's application.
//  2. A daemon with an active release whose proxy host, port and upstream
//     host match cfg is reused: Cleanup returns DaemonActive and does
//     nothing else. Any other daemon is shut down (DaemonStopped) —
//     unless systemd holds its sockets: then a proxy that differs is
//     refused (the socket units must be reinstalled and restarted), and an
//     idle daemon is kept (DaemonKept).
//  3. With no daemon left, it stops the orphans of a crashed one (as
//     Recover with force).
//  4. It quits the GNU Screen sessions of legacyTakeover.screens and stops
//     every process of a session (`SCREEN -dmS NAME`) or matching a
//     legacyTakeover.processes entry, with their descendants: SIGTERM, then
//     SIGKILL after legacyTakeover.forceStopTimeoutMs. If any such process
//     still runs afterwards, it returns a *LegacySurvivorsError.
func Cleanup(ctx context.Context, cfg *config.Config) (*CleanupResult, error) {
	return cleanupWith(ctx, cfg, socketUnitsActive)
}

// activatedFunc reports whether systemd holds the application's sockets;
// tests stand in for it where no systemd runs.
type activatedFunc func(ctx context.Context, app string) bool

func cleanupWith(ctx context.Context, cfg *config.Config, activated activatedFunc) (*CleanupResult, error) {
	res := &CleanupResult{Action: NoDaemon, RecoveredOrphans: []state.Orphan{}, Screens: []string{}, Processes: []LegacyStop{}}
	sock := cfg.Control.Path
	if err := checkSocketOwner(sock, os.Getuid(), cfg.Control.Owner); err != nil {
		return nil, err
	}
	client := Client(sock, cfg)
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	st, err := client.Status(pctx)
	cancel()
	daemonUp := err == nil
	switch {
	case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED):
		// No socket, or nobody listening on it: no daemon, nothing to decide.
	case errors.Is(err, control.ErrUntrusted):
		return nil, err
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("probe the control socket: %w", err)
	case err != nil:
		// Something holds the socket but did not answer status as a
		// rollbridge daemon does (hung up, garbage, no answer in time).
		return nil, fmt.Errorf("a non-rollbridge process is using %s (status: %v); refusing predeploy cleanup", sock, err)
	default:
		d, err := decide(cfg, st, func() bool { return activated(ctx, cfg.Application) })
		if err != nil {
			return nil, err
		}
		res.Action, res.Reason = d.action, d.reason
		switch d.action {
		case DaemonActive:
			return res, nil
		case DaemonStopped:
			if err := shutdownDaemon(ctx, client); err != nil {
				return nil, err
			}
			daemonUp = false
		}
	}
	if !daemonUp && cfg.StatePath != "" {
		rec, err := Recover(ctx, cfg, true)
		if err != nil {
			return nil, err
		}
		res.RecoveredOrphans = rec.Stopped
		if n := len(rec.StillRunning); n > 0 {
			return nil, fmt.Errorf("could not stop %d rollbridge orphaned %s; see rollbridgectl recover", n, plural(n, "process", "processes"))
		}
	}
	if lt := cfg.LegacyTakeover; lt != nil {
		for _, name := range lt.Screens {
			if quitScreen(ctx, name) {
				res.Screens = append(res.Screens, name)
			}
		}
		stopped, err := stopLegacy(ctx, *lt)
		if err != nil {
			return nil, err
		}
		res.Processes = stopped
	}
	return res, nil
}

// decision is what to do with a daemon that answered.
type decision struct {
	action CleanupAction
	reason string
}

// decide applies step 2 of Cleanup to a daemon's status. activated is
// asked only when the answer depends on it.
func decide(cfg *config.Config, st control.Status, activated func() bool) (decision, error) {
	sock := cfg.Control.Path
	if st.Application != cfg.Application {
		return decision{}, fmt.Errorf("a rollbridge daemon for %q is using %s; expected %q", st.Application, sock, cfg.Application)
	}
	why := proxyMismatch(cfg, st.Proxy)
	switch {
	case why == "" && st.ActiveReleaseID != nil:
		return decision{DaemonActive, fmt.Sprintf("release %s is active and the proxy matches the config", *st.ActiveReleaseID)}, nil
	case why != "" && activated():
		// systemd holds the listening sockets and passes the same ones to
		// every daemon it starts: a restart alone would serve the old
		// address again. The socket units must change first.
		return decision{}, fmt.Errorf("the running daemon's %s, and systemd holds its sockets: a restart would keep the old ones. "+
			"install the new socket units with `rollbridgectl systemd units --install`, then restart them and the daemon: systemctl restart %s %s %s",
			why, systemd.ProxySocketUnit(cfg.Application), systemd.ControlSocketUnit(cfg.Application), systemd.ServiceUnit(cfg.Application))
	case why != "":
		return decision{DaemonStopped, why}, nil
	case activated():
		return decision{DaemonKept, "it has no active release, and systemd would start it again at once (socket activation)"}, nil
	}
	return decision{DaemonStopped, "it has no active release"}, nil
}

// proxyMismatch says how a daemon's proxy differs from cfg's, or "". A
// config port of 0 (any free port) matches whatever the daemon bound.
func proxyMismatch(cfg *config.Config, p control.ProxyInfo) string {
	if p.Host == cfg.Proxy.Host && (cfg.Proxy.Port == 0 || p.Port == cfg.Proxy.Port) && p.UpstreamHost == cfg.Proxy.UpstreamHost {
		return ""
	}
	return fmt.Sprintf("proxy %s:%d (upstream host %s) differs from the config's %s (upstream host %s)",
		p.Host, p.Port, p.UpstreamHost, cfg.ProxyAddr(), cfg.Proxy.UpstreamHost)
}

// shutdownDaemon asks the daemon to shut down and waits until nothing
// listens on its socket any more.
func shutdownDaemon(ctx context.Context, client *control.Client) error {
	if _, err := client.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down the daemon on %s: %w", client.Path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, shutdownTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for client.Listening(ctx) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for the rollbridge daemon at %s to shut down", client.Path)
		case <-tick.C:
		}
	}
	return nil
}

// socketUnitsActive reports whether systemd runs and the application's
// proxy socket unit is active: then systemd, not the daemon, owns the
// listening sockets.
func socketUnitsActive(ctx context.Context, app string) bool {
	if !systemd.Booted() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := systemd.Connect(ctx)
	if err != nil {
		return false // no bus to ask: nothing socket-activated can be told apart
	}
	defer m.Close()
	u, err := m.Unit(ctx, systemd.ProxySocketUnit(app))
	return err == nil && u.Exists() && u.ActiveState == "active"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
