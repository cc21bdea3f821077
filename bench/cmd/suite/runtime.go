package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// RuntimeReport is the process-runtime section: the same deploy of the
// demo app with the exec runtime (the daemon's children) and the systemd
// runtime (transient units), start -> web spawned -> healthy -> switched.
type RuntimeReport struct {
	Deploys  int            `json:"deploys"`
	Runtimes []RuntimePhase `json:"runtimes"`
	Note     string         `json:"note,omitempty"` // why a runtime was not measured
}

// RuntimePhase is one runtime's deploys, in milliseconds from the moment
// the deploy request was sent.
type RuntimePhase struct {
	Runtime string  `json:"runtime"`
	Phases  []Phase `json:"phasesMs"`
}

// systemdHere reports whether the systemd runtime can run here: systemd is
// the service manager and we are root (the daemon starts units over the
// system bus). The real-systemd lane runs this section inside its sandbox.
func systemdHere() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir() && os.Geteuid() == 0
}

// runtimeDeploys deploys the demo app e.o.runtimeDeploys times with each
// runtime, alternating between them so that noise on this shared machine
// hits both alike. No load runs meanwhile: the section measures the
// runtime's cost, not the proxy's.
func runtimeDeploys(ctx context.Context, e *env) (*RuntimeReport, error) {
	rep := &RuntimeReport{Deploys: e.o.runtimeDeploys}
	runtimes := []string{"exec", "systemd"}
	if !systemdHere() {
		runtimes = runtimes[:1]
		rep.Note = "systemd runtime not measured: systemd is not the service manager here, or not root (scripts/systemd-lane.sh runs this section inside its systemd sandbox)"
	}
	daemons := make([]*daemon, len(runtimes))
	for i, rt := range runtimes {
		d, _, err := e.startDaemonWith("rt-"+rt, fmt.Sprintf("{runtime: %q}", rt), "{}", "[]", 2)
		if err != nil {
			return rep, fmt.Errorf("runtime %s: %w", rt, err)
		}
		// The first deploy of a daemon pays one-off costs (the slice's
		// cgroups, the journal follower): not part of the comparison.
		if _, err := d.deploy(ctx, nil); err != nil {
			return rep, fmt.Errorf("runtime %s: first deploy: %w", rt, err)
		}
		daemons[i] = d
		rep.Runtimes = append(rep.Runtimes, RuntimePhase{Runtime: rt})
	}
	for n := 0; n < e.o.runtimeDeploys; n++ {
		for i, d := range daemons {
			p, err := timedDeploy(ctx, d)
			if err != nil {
				return rep, fmt.Errorf("runtime %s: deploy %d: %w", runtimes[i], n+1, err)
			}
			rep.Runtimes[i].Phases = append(rep.Runtimes[i].Phases, p)
			// Let the previous release's stop (it drains at once: no
			// connections) finish before the next deploy of either.
			time.Sleep(100 * time.Millisecond)
		}
	}
	return rep, nil
}

// timedDeploy deploys a new release and times its progress events as the
// client sees them.
func timedDeploy(ctx context.Context, d *daemon) (Phase, error) {
	var web, healthy, switched time.Time
	start := time.Now()
	id, err := d.deploy(ctx, func(p control.Progress) {
		now := time.Now()
		switch p.Message {
		case "process started":
			if p.Data["id"] == "web" {
				web = now
			}
		case "release healthy":
			healthy = now
		case "traffic switched":
			switched = now
		}
	})
	returned := time.Now()
	ms := func(t time.Time) float64 {
		if t.IsZero() {
			return -1
		}
		return float64(t.Sub(start).Microseconds()) / 1000
	}
	return Phase{Release: id, WebStarted: ms(web), Healthy: ms(healthy), Switched: ms(switched), Returned: ms(returned), OldStopped: -1}, err
}
