package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// DeployRequest names a prepared release.
type DeployRequest struct {
	ReleasePath string
	ReleaseID   string // default: Revision, else a UTC timestamp
	Revision    string
}

// id checks the request's release id and revision, which reach shell
// commands, file names and terminals (see config.CheckReleaseID), and
// returns the release id: ReleaseID, else Revision, else a UTC timestamp.
func (r DeployRequest) id() (string, error) {
	if r.Revision != "" {
		if err := config.CheckRevision(r.Revision); err != nil {
			return "", refuse(ErrInvalid, "revision %v", err)
		}
	}
	switch {
	case r.ReleaseID != "":
		if err := config.CheckReleaseID(r.ReleaseID); err != nil {
			return "", refuse(ErrInvalid, "release id %v", err)
		}
		return r.ReleaseID, nil
	case r.Revision != "":
		if err := config.CheckReleaseID(r.Revision); err != nil {
			return "", refuse(ErrInvalid, "the revision is the release id when none is given, and release id %v; pass a release id of its own (--release-id)", err)
		}
		return r.Revision, nil
	}
	return time.Now().UTC().Format("20060102150405"), nil
}

// checkRecorded checks the id and revision of a release restored from a
// state file, which an earlier version may have written without checking
// them.
func checkRecorded(id, revision string) error {
	const fix = "it was recorded by an earlier version of rollbridge; deploy the release again under a valid id"
	if len(id) > config.MaxIDLength {
		// A live id redeployed gets a suffix ("-2"), which may take a
		// 200-character id past the limit: only its characters matter here.
		if err := config.CheckReleaseID("x" + id[config.MaxIDLength:]); err != nil {
			return refuse(ErrConflict, "release id %s: %v; %s", strconv.Quote(id), err, fix)
		}
		id = id[:config.MaxIDLength]
	}
	if err := config.CheckReleaseID(id); err != nil {
		return refuse(ErrConflict, "release id %v; %s", err, fix)
	}
	if revision != "" {
		if err := config.CheckRevision(revision); err != nil {
			return refuse(ErrConflict, "revision %v; %s", err, fix)
		}
	}
	return nil
}

// DeployResult is what deploy and rollback answer.
type DeployResult struct {
	ActiveReleaseID   string  `json:"activeReleaseId"`
	PreviousReleaseID *string `json:"previousReleaseId"`
	// ConfigProblem is set when a rollback could not use the config file
	// and ran with the last good config instead: it says why ("" otherwise).
	ConfigProblem string `json:"configProblem,omitempty"`
}

// Progress reports a step of a long command; it may be nil.
type Progress func(message string, data map[string]any)

func (p Progress) send(name events.Name, data map[string]any) {
	if p != nil {
		p(string(name), data)
	}
}

// Deploy starts a new release, health-checks it, switches traffic to it and
// retires the previous one, in the spec's order. On failure the previous
// release keeps serving and everything this deploy started is stopped again.
// With Options.LoadConfig it first re-reads the config (see reload.go): a
// file that does not load, or a change a deploy cannot apply, fails the
// deploy before anything starts.
func (s *Supervisor) Deploy(ctx context.Context, req DeployRequest, progress Progress) (*DeployResult, error) {
	id, err := req.id()
	if err != nil {
		return nil, err
	}
	if err := s.begin(ctx, "deploy of release "+id); err != nil {
		return nil, err
	}
	defer s.tab.end()
	if err := s.canaryConflict("deploy"); err != nil {
		return nil, err
	}
	r, _, err := s.addRelease(ctx, id, req)
	if err != nil {
		return nil, err
	}
	return s.launch(ctx, r, progress)
}

// addRelease re-reads the config (see deployConfig), checks the release
// directory and adds the release as Starting with that config: the common
// first step of a deploy and a canary deploy. A directory that cannot be
// used is recorded as a failed deploy.
func (s *Supervisor) addRelease(ctx context.Context, id string, req DeployRequest) (*rel, *config.Config, error) {
	cfg, err := s.deployConfig(ctx)
	if err != nil {
		return nil, nil, err
	}
	path, err := filepath.Abs(req.ReleasePath)
	if err != nil {
		return nil, nil, err
	}
	if err := checkReleasePath(path); err != nil {
		s.emit(events.DeployFailed, map[string]any{events.KeyReleaseID: id, "releasePath": path, events.KeyError: err.Error()})
		return nil, nil, recorded(err)
	}
	return s.tab.add(id, path, req.Revision, cfg), cfg, nil
}

// bootRelease starts r's processes in the spec's order and waits until its
// proxied process is healthy: 1. the services not yet running, 2. the
// companions, then the proxied process. It returns the proxied instance,
// the release's variables, the address to proxy to and the services it
// started (which a failed deploy stops again, also when err != nil).
func (s *Supervisor) bootRelease(ctx context.Context, r *rel, cfg *config.Config, progress Progress) (web *instance, rv releaseVars, addr string, started []*unit, err error) {
	ports, err := s.allocatePorts(cfg)
	if err != nil {
		return nil, rv, "", nil, err
	}
	rv = releaseVars{ID: r.id, Path: r.path, Revision: r.revision, Ports: ports}
	s.tab.setPorts(r, releasePorts(cfg, ports))
	if started, err = s.ensureServices(ctx, cfg, rv, progress); err != nil {
		return nil, rv, "", started, err
	}
	if web, err = s.startReleaseProcesses(ctx, r, cfg, rv, progress); err != nil {
		return nil, rv, "", started, err
	}
	host, port := cfg.Proxy.UpstreamHost, rv.Ports[web.cfg.ID]
	if err := s.waitReady(ctx, r, web, host, port, progress); err != nil {
		return nil, rv, "", started, err
	}
	return web, rv, net.JoinHostPort(host, strconv.Itoa(port)), started, nil
}

// Rollback redeploys a retained release: by default the one that was active
// before the current one. It re-reads the config like a deploy, but a file
// that does not load or cannot be applied never blocks it: it then runs with
// the last good config and says so (DeployResult.ConfigProblem, a "config
// reload refused" event and progress line).
func (s *Supervisor) Rollback(ctx context.Context, releaseID string, progress Progress) (*DeployResult, error) {
	if releaseID != "" {
		if err := config.CheckReleaseID(releaseID); err != nil {
			return nil, refuse(ErrInvalid, "release id %v", err)
		}
	}
	if err := s.begin(ctx, "rollback"); err != nil {
		return nil, err
	}
	defer s.tab.end()
	if err := s.canaryConflict("rollback"); err != nil {
		return nil, err
	}
	target, err := s.tab.rollbackTarget(releaseID)
	if err != nil {
		return nil, err
	}
	// A release restored from the state file of an older version may
	// predate the rules on ids; its values must not reach a command.
	if err := checkRecorded(target.id, target.revision); err != nil {
		return nil, fmt.Errorf("rollback to %s: %w", strconv.Quote(target.id), err)
	}
	if err := checkReleasePath(target.path); err != nil {
		return nil, fmt.Errorf("rollback to %s: %w", target.id, err)
	}
	rollback := map[string]any{events.KeyReleaseID: target.id, "releasePath": target.path}
	s.emit(events.RollbackStarting, rollback)
	progress.send(events.RollbackStarting, rollback)
	// A target still draining is stopped first: its processes are the
	// previous launch and must not overlap the fresh start. stopRelease
	// returns only once that stop finished, which relaunch requires.
	if err := s.stopRelease(target); err != nil {
		return nil, fmt.Errorf("rollback to %s: %w", target.id, err)
	}
	cfg, problem := s.rollbackConfig(ctx, progress)
	if err := s.tab.relaunch(target, cfg); err != nil {
		return nil, fmt.Errorf("rollback to %s: %w", target.id, err)
	}
	res, err := s.launch(ctx, target, progress)
	if res != nil {
		res.ConfigProblem = problem
	}
	return res, err
}

// launch runs the deploy flow for r, which is Starting with a fresh run.
// The caller holds the running-command slot.
func (s *Supervisor) launch(ctx context.Context, r *rel, progress Progress) (*DeployResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnShutdown := context.AfterFunc(s.life, cancel)
	defer stopOnShutdown()

	cfg := s.tab.current(r).cfg
	prev := s.tab.activeRelease()
	var prevID *string
	if prev != nil {
		prevID = &prev.id
	}
	starting := map[string]any{events.KeyReleaseID: r.id, "releasePath": r.path, "previousReleaseId": prevID}
	if r.revision != "" {
		starting["revision"] = r.revision // the spec leaves it out when none was given
	}
	s.emit(events.DeployStarting, starting)
	progress.send(events.DeployStarting, map[string]any{events.KeyReleaseID: r.id, "releasePath": r.path})

	var startedServices []*unit
	fail := func(err error) (*DeployResult, error) {
		return nil, s.failDeploy(r, prev, startedServices, err)
	}

	// 1. services not yet running; 2. companions, then the proxied process.
	web, rv, addr, startedServices, err := s.bootRelease(ctx, r, cfg, progress)
	if err != nil {
		return fail(err)
	}
	// Healthy: the config this release started with becomes the running one.
	s.adopt(cfg, r.id)

	// 3. switch traffic.
	if err := s.tab.activate(r, proxy.NewBackend(r.id, addr)); err != nil {
		return fail(err)
	}
	web.proc.SetAutoRestart(true)
	s.emit(events.TrafficSwitched, map[string]any{events.KeyReleaseID: r.id, "previousReleaseId": prevID})
	progress.send(events.TrafficSwitched, map[string]any{events.KeyReleaseID: r.id, "previousReleaseId": prevID})

	if err := s.afterSwitch(ctx, r, prev, cfg, rv, progress); err != nil {
		return nil, err
	}
	return &DeployResult{ActiveReleaseID: r.id, PreviousReleaseID: prevID}, nil
}

// afterSwitch finishes a deploy (or a promote) once r serves every new
// request: 4. services restart from the newest good release; 5. the
// singletons move, old stopped before new started, never overlapping; 6.
// prev (nil: none) drains and stops in the background. r is active even
// when it returns an error: only the singletons can fail here.
func (s *Supervisor) afterSwitch(ctx context.Context, r, prev *rel, cfg *config.Config, rv releaseVars, progress Progress) error {
	s.refreshServices(cfg, rv)
	singletonErr := s.replaceSingletons(ctx, cfg, rv, progress)
	if prev != nil {
		if err := s.retire(prev, cfg); err != nil {
			s.internalError(err)
		}
	}
	s.prune()
	if singletonErr != nil {
		s.emit(events.DeployFailed, map[string]any{events.KeyReleaseID: r.id, events.KeyError: singletonErr.Error(), "trafficSwitched": true})
		return recorded(fmt.Errorf("release %s is active, but %w", r.id, singletonErr))
	}
	return nil
}

// failDeploy undoes a deploy: the new release's processes and the services
// this deploy started are stopped; the previous release keeps serving.
func (s *Supervisor) failDeploy(r, prev *rel, services []*unit, cause error) error {
	output := map[string][]string{}
	for _, in := range s.tab.procs(r) {
		logs := in.proc.Logs()
		if len(logs) > 20 {
			logs = logs[len(logs)-20:]
		}
		lines := make([]string, len(logs))
		for i, l := range logs {
			lines[i] = l.Line
		}
		output[in.proc.ID()] = lines
	}
	stopErr := s.stopRelease(r)
	stopAll(unitProcs(services))
	if err := errors.Join(stopErr, s.tab.fail(r, services)); err != nil {
		s.internalError(err)
	}
	s.prune()
	data := map[string]any{events.KeyReleaseID: r.id, events.KeyError: cause.Error(), "output": output}
	if prev != nil {
		data["activeReleaseId"] = prev.id
	}
	s.emit(events.DeployFailed, data)
	still := "no release is active"
	if prev != nil {
		still = "release " + prev.id + " stays active"
	}
	return recorded(fmt.Errorf("deploy of release %s failed: %w (%s; see rollbridgectl logs and events)", r.id, cause, still))
}
