package supervisor

import (
	"fmt"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// canaryRelease returns the release that runs as a canary, or nil.
func (t *table) canaryRelease() *rel {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.canary
}

// startCanary makes the starting release r the canary next to the active
// release and gives backend, r's, the split, in the same section. It fails
// when no release is active any more or another canary runs.
func (t *table) startCanary(r *rel, backend *proxy.Backend, split proxy.Canary, rv releaseVars) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.active == nil {
		return refuse(ErrConflict, "no release is active any more: a canary needs one to run beside")
	}
	if t.canary != nil {
		return refuse(ErrConflict, "release %s runs as a canary already", t.canary.id)
	}
	if err := release.Transition(r.state, release.Canary); err != nil {
		return fmt.Errorf("start canary: release %s: %w", r.id, err)
	}
	if _, err := t.routeCanary(backend, split); err != nil {
		return refuse(ErrInvalid, "canary share: %v", err)
	}
	_ = t.setStateLocked(r, release.Canary) // checked above
	r.run.backend = backend
	r.before, r.replaced = nil, nil
	r.canaried = true
	t.canary, t.split, t.canaryVars = r, split, rv
	return nil
}

// setSplit changes the running canary's split and returns its release.
func (t *table) setSplit(split proxy.Canary) (*rel, proxy.Canary, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.canary
	if r == nil {
		return nil, proxy.Canary{}, refuse(ErrNotFound, "no canary runs; start one with rollbridgectl deploy --canary PERCENT")
	}
	if _, err := t.routeCanary(r.run.backend, split); err != nil {
		return nil, proxy.Canary{}, refuse(ErrInvalid, "canary share: %v", err)
	}
	prev := t.split
	t.split = split
	return r, prev, nil
}

// promoteCanary makes the canary the active release, switching the proxy
// in the same section, and returns it, the release it replaced (to
// retire) and the canary's release variables.
func (t *table) promoteCanary() (r, prev *rel, rv releaseVars, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r = t.canary
	if r == nil {
		return nil, nil, rv, refuse(ErrNotFound, "no canary runs; nothing to promote")
	}
	if err := t.setStateLocked(r, release.Active); err != nil {
		return nil, nil, rv, fmt.Errorf("promote: %w", err)
	}
	r.activatedAt = time.Now()
	prev, rv = t.active, t.canaryVars
	t.active = r
	t.canary, t.split, t.canaryVars = nil, proxy.Canary{}, releaseVars{}
	if t.promote() == nil {
		t.swap(r.run.backend) // the proxy had no canary (a broken invariant): switch anyway
	}
	return r, prev, rv, nil
}

// endCanaryLocked takes the canary out of the routing: its clients go to
// the active release from their next request on.
func (t *table) endCanaryLocked() {
	_, _ = t.routeCanary(nil, proxy.Canary{}) // nil never fails
	t.canary, t.split, t.canaryVars = nil, proxy.Canary{}, releaseVars{}
}
