package supervisor

import (
	"slices"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/release"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// Status is the answer to `rollbridgectl status`, in the Node original's shape.
type Status struct {
	ActiveReleaseID *string         `json:"activeReleaseId"`
	Application     string          `json:"application"`
	Control         ControlStatus   `json:"control"`
	Orphans         []state.Orphan  `json:"orphans"`
	Proxy           ProxyStatus     `json:"proxy"`
	Releases        []ReleaseStatus `json:"releases"`
	Services        []UnitStatus    `json:"services"`
	Singletons      []UnitStatus    `json:"singletons"`
	// Extensions.
	Daemon DaemonStatus  `json:"daemon"`
	Canary *CanaryStatus `json:"canary,omitempty"` // nil when no canary runs
}

// CanaryStatus is the running canary: its release, its share of new
// clients (parts of proxy.ShareScale) and its cookie ("" = clients are
// hashed by address).
type CanaryStatus struct {
	ReleaseID string `json:"releaseId"`
	Share     int    `json:"share"`
	Cookie    string `json:"cookie"`
}

// ControlStatus echoes the config's control section; nil means not set.
type ControlStatus struct {
	Path  string           `json:"path"`
	Mode  *config.FileMode `json:"mode,omitempty"`
	Owner *config.IDOrName `json:"owner,omitempty"`
	Group *config.IDOrName `json:"group,omitempty"`
}

// ProxyStatus describes the stable listener. Port is the bound port (it
// differs from the config only when the config says 0).
type ProxyStatus struct {
	Host         string `json:"host"`
	Port         int    `json:"port"`
	UpstreamHost string `json:"upstreamHost"`
	Held         int    `json:"held"`       // requests waiting for a release now (proxy.holdTimeoutMs)
	HoldGaveUp   int64  `json:"holdGaveUp"` // requests the hold answered 503, since the daemon started
	// EventLoop is the event-loop path's work since the daemon started;
	// absent unless it runs (ROLLBRIDGE_EVENT_LOOP).
	EventLoop *EventLoopStatus `json:"eventLoop,omitempty"`
}

// EventLoopStatus counts what the event loop did with what it took.
type EventLoopStatus struct {
	Threads   int    `json:"threads"`   // the loop's threads
	Served    uint64 `json:"served"`    // requests it answered itself
	HandedOff uint64 `json:"handedOff"` // connections it gave the net/http path
}

// DaemonStatus is about rollbridged itself.
type DaemonStatus struct {
	Pid               int       `json:"pid"`
	Version           string    `json:"version"`
	StartedAt         time.Time `json:"startedAt"`
	CommandInProgress *string   `json:"commandInProgress"`
	// RestoreProblem says why the last active release was not restored at
	// start (statePath), if it was not.
	RestoreProblem *string `json:"restoreProblem,omitempty"`
}

// ReleaseStatus is one release.
type ReleaseStatus struct {
	ReleaseID       string          `json:"releaseId"`
	ReleasePath     string          `json:"releasePath"`
	Revision        *string         `json:"revision"`
	State           release.State   `json:"state"`
	Ports           map[string]int  `json:"ports"`
	PortOrder       []string        `json:"-"` // the keys of Ports in config order
	Connections     Connections     `json:"connections"`
	ConnectionCount int64           `json:"connectionCount"`
	Requests        uint64          `json:"requests"`
	CreatedAt       time.Time       `json:"createdAt"`
	ActivatedAt     *time.Time      `json:"activatedAt"`
	DrainStartedAt  *time.Time      `json:"drainStartedAt"`
	StoppedAt       *time.Time      `json:"stoppedAt"`
	Error           *string         `json:"error,omitempty"`
	Processes       []ProcessStatus `json:"processes"`
}

// Connections counts a release's open proxied connections.
type Connections struct {
	HTTP      int64 `json:"http"`
	WebSocket int64 `json:"websocket"`
}

// ProcessStatus is a process's status plus where it belongs.
type ProcessStatus struct {
	process.Status
	Policy string `json:"policy"`
	Port   *int   `json:"port"`
}

// UnitStatus is a service or singleton entry.
type UnitStatus struct {
	ID        string        `json:"id"`
	ReleaseID string        `json:"releaseId"`
	Process   ProcessStatus `json:"process"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Snapshot builds the status. It never waits for a running command.
func (s *Supervisor) Snapshot(pid int, version string, proxy ProxyStatus) Status {
	cfg := s.cfg.Load()
	// maxAgeMs is about time, not events: apply it whenever someone looks.
	s.prune()
	v := s.tab.view()
	st := Status{
		Application: cfg.Application,
		Control:     ControlStatus{Path: cfg.Control.Path, Mode: cfg.Control.Mode, Owner: cfg.Control.Owner, Group: cfg.Control.Group},
		Proxy:       proxy,
		Releases:    []ReleaseStatus{},
		Services:    []UnitStatus{},
		Singletons:  []UnitStatus{},
		Daemon: DaemonStatus{Pid: pid, Version: version, StartedAt: s.started.UTC(), CommandInProgress: strPtr(v.running),
			RestoreProblem: strPtr(v.restore)},
	}
	if r := v.activeRelease(); r != nil {
		id := r.id
		st.ActiveReleaseID = &id
	}
	if v.canary != "" {
		st.Canary = &CanaryStatus{ReleaseID: v.canary, Share: v.split.Share, Cookie: v.split.Cookie}
	}
	// The spec's orders: releases oldest first, services and singletons in
	// config order (the order they were first started in).
	order := func(id string) int {
		if i := slices.IndexFunc(cfg.Processes, func(p config.Process) bool { return p.ID == id }); i >= 0 {
			return i
		}
		return len(cfg.Processes) // removed from the config by a reload: last
	}
	byConfig := func(a, b unit) int {
		if d := order(a.cfg.ID) - order(b.cfg.ID); d != 0 {
			return d
		}
		return strings.Compare(a.cfg.ID, b.cfg.ID)
	}
	slices.SortStableFunc(v.services, byConfig)
	slices.SortStableFunc(v.singletons, byConfig)
	for _, r := range v.releases {
		ports := map[string]int{}
		for k, p := range r.ports {
			ports[k] = p
		}
		ids := make([]string, 0, len(ports))
		for id := range ports {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b string) int {
			if d := order(a) - order(b); d != 0 {
				return d
			}
			return strings.Compare(a, b)
		})
		rs := ReleaseStatus{
			ReleaseID: r.id, ReleasePath: r.path, Revision: strPtr(r.revision), State: r.state,
			Ports: ports, PortOrder: ids, CreatedAt: r.createdAt.UTC(), ActivatedAt: timePtr(r.activatedAt),
			DrainStartedAt: timePtr(r.drainStartedAt), StoppedAt: timePtr(r.stoppedAt), Error: strPtr(r.lastError),
			Processes: []ProcessStatus{},
		}
		if r.state.Live() {
			h, w := r.connections()
			rs.Connections = Connections{HTTP: h, WebSocket: w}
			rs.ConnectionCount = h + w
		}
		rs.Requests = r.requests()
		for _, in := range r.procs {
			rs.Processes = append(rs.Processes, procStatus(in.proc, string(in.cfg.Policy), r.ports[in.cfg.ID]))
		}
		st.Releases = append(st.Releases, rs)
	}
	for _, u := range v.services {
		st.Services = append(st.Services, UnitStatus{ID: u.cfg.ID, ReleaseID: u.releaseID, Process: procStatus(u.proc, "service", u.port)})
	}
	for _, u := range v.singletons {
		st.Singletons = append(st.Singletons, UnitStatus{ID: u.cfg.ID, ReleaseID: u.releaseID, Process: procStatus(u.proc, "singleton", u.port)})
	}
	st.Orphans = []state.Orphan{}
	if v.orphans != nil {
		st.Orphans = v.orphans()
	}
	return st
}

func procStatus(p *process.Process, policy string, port int) ProcessStatus {
	ps := ProcessStatus{Status: p.Status(), Policy: policy}
	if port != 0 {
		ps.Port = &port
	}
	return ps
}
