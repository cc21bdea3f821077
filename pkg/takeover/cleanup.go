package takeover

import (
	"context"
	"fmt"
	"strings"

	"github.com/rollbridge/rollbridge-go/internal/version"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// CleanupOptions tune Cleanup.
type CleanupOptions struct {
	// CheckDaemon restarts a running daemon (without an active release)
	// whose proxy host, port or upstream host differ from the config, or
	// whose version differs from this binary's.
	CheckDaemon bool
	// Ensure says how to start the daemon again after such a restart.
	Ensure EnsureOptions
}

// CleanupResult is what Cleanup did.
type CleanupResult struct {
	Skipped          bool           `json:"skipped"`
	Reason           string         `json:"reason,omitempty"`          // why it was skipped
	RestartedDaemon  string         `json:"restartedDaemon,omitempty"` // why the daemon was restarted
	RecoveredOrphans []state.Orphan `json:"recoveredOrphans"`
	Screens          []string       `json:"screens"` // GNU Screen sessions that were quit
	Processes        []LegacyStop   `json:"processes"`
}

// Cleanup prepares a host for its first deploy. It does nothing when a
// daemon already has an active release. Otherwise it may restart a daemon
// that does not match the config (see CleanupOptions), stops the orphans of
// a crashed daemon (as Recover with force), quits the GNU Screen sessions
// of legacyTakeover.screens, and stops the processes matching
// legacyTakeover.processes with their descendants.
func Cleanup(ctx context.Context, cfg *config.Config, o CleanupOptions) (*CleanupResult, error) {
	res := &CleanupResult{RecoveredOrphans: []state.Orphan{}, Screens: []string{}, Processes: []LegacyStop{}}
	client := &control.Client{Path: cfg.Control.Path}
	st, err := client.Status(ctx)
	daemonUp := err == nil
	switch {
	case daemonUp && st.ActiveReleaseID != nil:
		res.Skipped = true
		res.Reason = fmt.Sprintf("the daemon has an active release (%s): nothing to clean up", *st.ActiveReleaseID)
		return res, nil
	case daemonUp && o.CheckDaemon:
		if why := mismatch(cfg, st); why != "" {
			if _, err := client.Shutdown(ctx); err != nil {
				return nil, fmt.Errorf("restart the daemon: %w", err)
			}
			if _, err := Ensure(ctx, cfg, o.Ensure); err != nil {
				return nil, fmt.Errorf("restart the daemon: %w", err)
			}
			res.RestartedDaemon = why
		}
	}
	if !daemonUp && cfg.StatePath != "" {
		rec, err := Recover(ctx, cfg, true)
		if err != nil {
			return nil, err
		}
		res.RecoveredOrphans = rec.Stopped
		if len(rec.StillRunning) > 0 {
			return nil, fmt.Errorf("%d orphaned processes could not be stopped; see rollbridgectl recover", len(rec.StillRunning))
		}
	}
	if lt := cfg.LegacyTakeover; lt != nil {
		for _, name := range lt.Screens {
			if quitScreen(ctx, name) {
				res.Screens = append(res.Screens, name)
			}
		}
		stopped, err := stopLegacy(ctx, lt.Processes, lt.ForceStopTimeout())
		if err != nil {
			return nil, err
		}
		res.Processes = stopped
	}
	return res, nil
}

// mismatch says how a running daemon differs from cfg and this binary, or "".
func mismatch(cfg *config.Config, st control.Status) string {
	var why []string
	if st.Proxy.Host != cfg.Proxy.Host || (cfg.Proxy.Port != 0 && st.Proxy.Port != cfg.Proxy.Port) || st.Proxy.UpstreamHost != cfg.Proxy.UpstreamHost {
		why = append(why, fmt.Sprintf("proxy %s:%d (upstream %s) differs from the config's %s (upstream %s)",
			st.Proxy.Host, st.Proxy.Port, st.Proxy.UpstreamHost, cfg.ProxyAddr(), cfg.Proxy.UpstreamHost))
	}
	if st.Daemon.Version != "" && st.Daemon.Version != version.Version {
		why = append(why, fmt.Sprintf("daemon version %s differs from %s", st.Daemon.Version, version.Version))
	}
	return strings.Join(why, "; ")
}
