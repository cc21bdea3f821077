package supervisor

import (
	"context"

	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// A canary is a release started as a deploy starts one (services not yet
// running, companions, the proxied process, its health check and listener
// check) that then takes a share of new clients next to the active
// release instead of all traffic. Singletons stay with the active release
// until the promote (the spec's rule: one copy, moved only when the
// release that owns them becomes active); a promote then does what the
// rest of a deploy does (services' template, singletons, retiring the old
// release); an abort drains and stops the canary as a deploy retires a
// release. While a canary runs, deploys, rollbacks and a stop of the
// active release are refused: each would leave the canary beside a
// release it was not tested against.

// CanaryResult is what deploy --canary, rollout set, promote and abort
// answer.
type CanaryResult struct {
	ActiveReleaseID string
	CanaryReleaseID string // "" once promoted or aborted
	Share           int    // parts of proxy.ShareScale of new clients on the canary
	// Previous is the share before a rollout set, the release retired by
	// a promote, or the canary an abort retired.
	PreviousShare     int
	PreviousReleaseID string
}

// canaryConflict refuses a command that would change the active release
// while a canary runs.
func (s *Supervisor) canaryConflict(what string) error {
	if c := s.tab.canaryRelease(); c != nil {
		return refuse(ErrConflict, "release %s runs as a canary; promote or abort it before a %s (rollbridgectl rollout promote|abort)", c.id, what)
	}
	return nil
}

// DeployCanary starts a release next to the active one and sends share
// (parts of proxy.ShareScale) of the new clients to it, sticky by the
// config's proxy.canaryCookie. On failure nothing changes for the active
// release, and what this deploy started is stopped again.
func (s *Supervisor) DeployCanary(ctx context.Context, req DeployRequest, share int, progress Progress) (*CanaryResult, error) {
	if share < 0 || share > proxy.ShareScale {
		return nil, refuse(ErrInvalid, "canary share must be 0 to 100 %%")
	}
	id, err := req.id()
	if err != nil {
		return nil, err
	}
	if err := s.begin(ctx, "canary deploy of release "+id); err != nil {
		return nil, err
	}
	defer s.tab.end()
	if err := s.canaryConflict("canary deploy"); err != nil {
		return nil, err
	}
	prev := s.tab.activeRelease()
	if prev == nil {
		return nil, refuse(ErrConflict, "no release is active: a canary runs beside one; deploy without --canary first")
	}
	r, cfg, err := s.addRelease(ctx, id, req)
	if err != nil {
		return nil, err
	}
	split := proxy.Canary{Share: share, Cookie: cfg.Proxy.CanaryCookie}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnShutdown := context.AfterFunc(s.life, cancel)
	defer stopOnShutdown()
	starting := map[string]any{events.KeyReleaseID: r.id, "releasePath": r.path, "previousReleaseId": prev.id, "canary": true}
	if r.revision != "" {
		starting["revision"] = r.revision
	}
	s.emit(events.DeployStarting, starting)
	progress.send(events.DeployStarting, map[string]any{events.KeyReleaseID: r.id, "releasePath": r.path, "canary": true})

	var startedServices []*unit
	fail := func(err error) (*CanaryResult, error) {
		return nil, s.failDeploy(r, prev, startedServices, err)
	}
	web, rv, addr, startedServices, err := s.bootRelease(ctx, r, cfg, progress)
	if err != nil {
		return fail(err)
	}
	backend := proxy.NewBackend(r.id, addr)
	if err := s.tab.startCanary(r, backend, split, rv); err != nil {
		return fail(err)
	}
	web.proc.SetAutoRestart(true)
	data := map[string]any{events.KeyReleaseID: r.id, "activeReleaseId": prev.id, "percent": percent(split.Share), "sticky": stickiness(split)}
	s.emit(events.CanaryStarted, data)
	progress.send(events.CanaryStarted, data)
	return &CanaryResult{ActiveReleaseID: prev.id, CanaryReleaseID: r.id, Share: split.Share}, nil
}

// RolloutSet changes the running canary's share of new clients. Clients
// that have a side keep it (see proxy.Canary).
func (s *Supervisor) RolloutSet(ctx context.Context, share int) (*CanaryResult, error) {
	if share < 0 || share > proxy.ShareScale {
		return nil, refuse(ErrInvalid, "canary share must be 0 to 100 %%")
	}
	if err := s.begin(ctx, "rollout set"); err != nil {
		return nil, err
	}
	defer s.tab.end()
	c := s.tab.canaryRelease()
	if c == nil {
		return nil, refuse(ErrNotFound, "no canary runs; start one with rollbridgectl deploy --canary PERCENT")
	}
	_, split := s.tab.canarySplit()
	next := split
	next.Share = share
	r, prev, err := s.tab.setSplit(next)
	if err != nil {
		return nil, err
	}
	active := s.tab.activeRelease()
	s.emit(events.CanaryShareChanged, map[string]any{events.KeyReleaseID: r.id, "percent": percent(share), "previousPercent": percent(prev.Share)})
	return &CanaryResult{ActiveReleaseID: idOf(active), CanaryReleaseID: r.id, Share: share, PreviousShare: prev.Share}, nil
}

// Promote makes the canary the active release: all traffic goes to it, its
// singletons replace the old release's, and the old release drains and
// stops as after a deploy.
func (s *Supervisor) Promote(ctx context.Context, progress Progress) (*CanaryResult, error) {
	if err := s.begin(ctx, "rollout promote"); err != nil {
		return nil, err
	}
	defer s.tab.end()
	r, prev, rv, err := s.tab.promoteCanary()
	if err != nil {
		return nil, err
	}
	cfg := s.tab.current(r).cfg
	// Promoted: the config the canary started with becomes the running one.
	s.adopt(cfg, r.id)
	data := map[string]any{events.KeyReleaseID: r.id, "previousReleaseId": idPtr(prev)}
	s.emit(events.CanaryPromoted, data)
	s.emit(events.TrafficSwitched, data)
	progress.send(events.TrafficSwitched, data)
	if err := s.afterSwitch(ctx, r, prev, cfg, rv, progress); err != nil {
		return nil, err
	}
	return &CanaryResult{ActiveReleaseID: r.id, PreviousReleaseID: idOf(prev)}, nil
}

// Abort takes the canary out of the routing at once (its clients go to the
// active release from their next request on) and drains and stops it as a
// deploy retires a release. Services it started keep running.
func (s *Supervisor) Abort(ctx context.Context) (*CanaryResult, error) {
	if err := s.begin(ctx, "rollout abort"); err != nil {
		return nil, err
	}
	defer s.tab.end()
	c := s.tab.canaryRelease()
	if c == nil {
		return nil, refuse(ErrNotFound, "no canary runs; nothing to abort")
	}
	active := s.tab.activeRelease()
	// retire ends the canary's routing in the section that makes it draining.
	if err := s.retire(c, s.cfg.Load()); err != nil {
		return nil, err
	}
	s.emit(events.CanaryAborted, map[string]any{events.KeyReleaseID: c.id, "activeReleaseId": idOf(active)})
	return &CanaryResult{ActiveReleaseID: idOf(active), PreviousReleaseID: c.id}, nil
}

// canarySplit returns the running canary and its split.
func (t *table) canarySplit() (*rel, proxy.Canary) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.canary, t.split
}

// percent turns a share into the percentage events and answers show.
func percent(share int) float64 { return float64(share) * 100 / proxy.ShareScale }

func stickiness(c proxy.Canary) string {
	if c.Cookie == "" {
		return "client address"
	}
	return "cookie " + c.Cookie
}

func idOf(r *rel) string {
	if r == nil {
		return ""
	}
	return r.id
}

func idPtr(r *rel) *string {
	if r == nil {
		return nil
	}
	return &r.id
}
