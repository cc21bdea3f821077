package supervisor

import (
	"sort"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/release"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// view is a copy of the table for readers, taken in one section. It holds
// plain values and pointers to things that never change or lock for
// themselves (processes, backends), so readers use it without the lock.
type view struct {
	releases   []releaseView // oldest first
	active     int           // index of the active release in releases, -1 if none
	services   []unit        // sorted by id
	singletons []unit        // sorted by id
	orphans    func() []state.Orphan
	restore    string
	running    string
	canary     string       // the canary's release id, "" when none runs
	split      proxy.Canary // its split
}

// releaseView is a release record and its current run, copied.
type releaseView struct {
	id, path, revision string
	state              release.State
	createdAt          time.Time
	activatedAt        time.Time
	drainStartedAt     time.Time
	stoppedAt          time.Time
	lastError          string
	ports              map[string]int
	procs              []*instance
	backend            *proxy.Backend
	extras             []*instance      // see run.extras
	extraPorts         []int            // their ports, as extras
	extraBackends      []*proxy.Backend // of the extras that drain
	requestsBefore     uint64           // see run.requestsBefore
}

// connections counts the release's open proxied connections, those still
// draining from a replaced proxied instance included.
func (v releaseView) connections() (http, websocket int64) {
	for _, b := range append([]*proxy.Backend{v.backend}, v.extraBackends...) {
		if b != nil {
			h, w := b.Connections()
			http, websocket = http+h, websocket+w
		}
	}
	return http, websocket
}

// requests counts the requests routed to the release since its current
// run started (a rollback to it starts a new run).
func (v releaseView) requests() uint64 {
	n := v.requestsBefore
	for _, b := range append([]*proxy.Backend{v.backend}, v.extraBackends...) {
		if b != nil {
			n += b.Requests()
		}
	}
	return n
}

func (v releaseView) retiredAt() time.Time {
	if !v.drainStartedAt.IsZero() {
		return v.drainStartedAt
	}
	return v.stoppedAt
}

// activeRelease returns the active release's view, or nil.
func (v *view) activeRelease() *releaseView {
	if v.active < 0 {
		return nil
	}
	return &v.releases[v.active]
}

func (t *table) view() view {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := view{releases: make([]releaseView, 0, len(t.releases)), active: -1,
		services: sortedUnitsLocked(t.services), singletons: sortedUnitsLocked(t.singletons),
		orphans: t.orphans, restore: t.restore, running: t.running}
	if t.canary != nil {
		v.canary, v.split = t.canary.id, t.split
	}
	for i, r := range t.releases {
		if r == t.active {
			v.active = i
		}
		ports := make(map[string]int, len(r.run.ports))
		for k, p := range r.run.ports {
			ports[k] = p
		}
		rv := releaseView{id: r.id, path: r.path, revision: r.revision, state: r.state,
			createdAt: r.createdAt, activatedAt: r.activatedAt, drainStartedAt: r.drainStartedAt, stoppedAt: r.stoppedAt,
			lastError: r.lastError, ports: ports, procs: append([]*instance(nil), r.run.procs...), backend: r.run.backend,
			requestsBefore: r.run.requestsBefore}
		for _, x := range r.run.extras {
			rv.extras = append(rv.extras, x.in)
			rv.extraPorts = append(rv.extraPorts, x.port)
			if x.backend != nil {
				rv.extraBackends = append(rv.extraBackends, x.backend)
			}
		}
		v.releases = append(v.releases, rv)
	}
	return v
}

func sortedUnitsLocked(m map[string]*unit) []unit {
	out := make([]unit, 0, len(m))
	for _, u := range m {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cfg.ID < out[j].cfg.ID })
	return out
}
