package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/supervisor"
)

// BootRelease is a release the daemon starts before it answers on the
// control socket (rollbridged --release-path, --release-id, --revision),
// for hosts that boot without a state file: a machine image, a container,
// a unit whose ExecStart names the release to serve. It goes through the
// normal health-checked deploy.
//
// A state file wins over it: when the release it records as active is
// restored, or processes of a previous daemon still run, BootRelease is
// not started (see Options.Boot).
type BootRelease struct {
	Path     string // absolute and clean
	ID       string // see config.CheckReleaseID
	Revision string // see config.CheckRevision
}

// Validate checks b's form; it reads no file. The messages name the
// rollbridged flags, since that is where a BootRelease comes from.
func (b BootRelease) Validate() error {
	if b.Path == "" || b.ID == "" || b.Revision == "" {
		return errors.New("--release-path, --release-id and --revision must be given together")
	}
	if !filepath.IsAbs(b.Path) {
		return fmt.Errorf("--release-path %q must be an absolute path", b.Path)
	}
	if filepath.Clean(b.Path) != b.Path {
		return fmt.Errorf("--release-path %q must be clean: no . or .. segments, repeated or trailing slashes (%s)", b.Path, filepath.Clean(b.Path))
	}
	if err := config.CheckReleaseID(b.ID); err != nil {
		return fmt.Errorf("--release-id %w", err)
	}
	if err := config.CheckRevision(b.Revision); err != nil {
		return fmt.Errorf("--revision %w", err)
	}
	return nil
}

// boot starts b unless the state file won (see BootRelease). restoreProblem
// is what restore reported ("" when it restored or had nothing to do). An
// error means b failed to start; everything that deploy started is stopped
// again by then.
func boot(ctx context.Context, cfg *config.Config, b BootRelease, prev *previous, restoreProblem string, log *events.Log, sup *supervisor.Supervisor, notifier Notifier) error {
	if active := sup.Summary().ActiveID; active != "" {
		log.Emit(events.BootstrapSkipped, map[string]any{events.KeyReleaseID: b.ID,
			events.KeyReason: fmt.Sprintf("release %s was restored from the state file, which wins over --release-id", active)})
		return nil
	}
	if orphans := prev.live(); len(orphans) > 0 {
		msg := fmt.Sprintf("release %s (--release-id) was not started: %d processes of the previous daemon still run; run rollbridgectl recover, then restart the daemon",
			b.ID, len(orphans))
		sup.SetRestoreProblem(msg)
		log.Emit(events.BootstrapSkipped, map[string]any{events.KeyReleaseID: b.ID, events.KeyReason: msg})
		return nil
	}
	attempt := cfg.Proxy.HealthTimeout() + 30*time.Second
	if p := cfg.Proxied(); p != nil && p.Health != nil {
		attempt = p.Health.Timeout() + p.Health.StartDelay() + 30*time.Second
	}
	notifier.ExtendTimeout(attempt)
	if _, err := sup.Deploy(ctx, supervisor.DeployRequest{ReleasePath: b.Path, ReleaseID: b.ID, Revision: b.Revision}, nil); err != nil {
		log.Emit(events.BootstrapActivationFailed, map[string]any{events.KeyReleaseID: b.ID, "status": "error", events.KeyError: err.Error()})
		return fmt.Errorf("boot release %s from %s: %w", b.ID, b.Path, err)
	}
	if restoreProblem != "" {
		sup.SetRestoreProblem(restoreProblem + fmt.Sprintf("; serving release %s from --release-id instead", b.ID))
	}
	return nil
}

// abandonStart undoes a start that cannot go on: it answers the requests
// it held and stops serving the proxy, stops whatever the start launched,
// and closes the control socket it never served, removing the file it
// created. The proxy's Serve returns meanwhile.
func (d *daemon) abandonStart() {
	d.stopServing(d.cfg.Load(), false)
	d.sup.Shutdown(context.Background())
	d.proxy.Close()
	d.ctl.Close(0)
	_ = d.lns.Control.Close() // never served
	if d.lns.Metrics != nil {
		_ = d.lns.Metrics.Close() // never served either
	}
	if d.lns.ControlOwned {
		_ = os.Remove(d.cfg.Load().Control.Path) // ours; may already be gone
	}
}
