package supervisor

import (
	"context"
	"errors"

	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// Traffic goes to whatever listens on the proxied process's port, and that
// port is easy to guess (the first free one of its range, and it shows in
// every process's command line). A local user who binds it first, and
// answers the health path, would get the release's traffic, cookies and
// all, while the real app fails with "address in use". So before traffic
// switches to a port, every listener that could accept a connection to it
// must be held by a process of the release: a member of one of its
// process trees (the exec runner tracks every descendant; the systemd
// runner has the unit's cgroup).

// runPids lists the live processes of r's current run: every member of
// every instance, the extras (a replacement starting, a replaced instance
// draining) included.
func (s *Supervisor) runPids(r *rel) []int {
	var pids []int
	for _, in := range s.tab.runInstances(r) {
		for _, m := range in.proc.Members() {
			pids = append(pids, m.Pid)
		}
	}
	return pids
}

// checkOwner checks that the listeners on host:port belong to r's
// processes. A foreign one is also reported as a "foreign listener" event,
// for whoever watches the journal for attacks.
func (s *Supervisor) checkOwner(ctx context.Context, r *rel, host string, port int) error {
	err := release.CheckListener(ctx, host, port, s.runPids(r))
	s.reportForeign(r, err)
	return err
}

func (s *Supervisor) reportForeign(r *rel, err error) {
	var le *release.ListenerError
	if !errors.As(err, &le) {
		return
	}
	var holders []string
	for _, f := range le.Foreign {
		if len(f.Holders) == 0 {
			holders = append(holders, f.Addr.String()+" user "+f.User)
		}
		for _, h := range f.Holders {
			holders = append(holders, f.Addr.String()+" "+h.String())
		}
	}
	s.emit(events.ForeignListener, map[string]any{events.KeyReleaseID: r.id, "address": le.Addr, "holders": holders, events.KeyError: err.Error()})
}

// squatted explains why the proxied process of r may have exited before it
// was ready: a listener that is not the release's holds its port (its
// bind failed with "address in use"). It returns that *ListenerError, or
// nil when there is none.
func (s *Supervisor) squatted(ctx context.Context, r *rel, host string, port int) error {
	err := release.CheckListener(ctx, host, port, s.runPids(r))
	var le *release.ListenerError
	if !errors.As(err, &le) {
		return nil
	}
	s.reportForeign(r, err)
	return err
}
