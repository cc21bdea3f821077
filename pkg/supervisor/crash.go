package supervisor

import (
	"context"
	"errors"

	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// When the proxied process of the active release crashes, its port is
// free until the process restarts, and whoever binds it first — another
// local user waiting for this — would get the release's traffic while the
// restarted app fails with "address in use". So traffic pauses when the
// process exits — the proxy holds the requests that arrive meanwhile
// (proxy.Pause, up to proxy.holdTimeoutMs each; with 0, a 503 instead of
// the 502 a closed port gives) — and resumes only once the restarted
// process is ready and owns the port again, checked as at a deploy
// (waitReady); the held requests then go to it. If another process holds
// the port, the proxied process is replaced by a new instance on a new
// port (replaceWeb), and traffic resumes there.
//
// The check closes the window from the moment the daemon sees the exit.
// Between the process's death and that moment (the time to reap it and
// read the end of its output) a connection could still reach a listener
// bound in between; docs/security.md says so.

// webSink passes the events of proxied instance in of release r on to the
// log, and tells the supervisor when it exits and when it is restarted
// after a crash. Its Emit is called from the process's goroutines, never
// with a lock held.
type webSink struct {
	s  *Supervisor
	r  *rel
	in *instance
}

func (w webSink) Emit(name events.Name, data map[string]any) {
	w.s.events.Emit(name, data)
	switch name {
	case events.ProcessExited:
		w.s.webExited(w.r, w.in)
	case events.ProcessStarted:
		if data[events.KeyReason] == string(process.ReasonCrash) {
			w.s.webRestarted(w.r, w.in)
		}
	case events.RestartLimitReached:
		// No restart is coming: requests held for one are answered 503 now
		// instead of each waiting out the hold timeout.
		w.s.tab.endWebHold(w.r, w.in)
	}
}

// webExited pauses the traffic of r when in, its proxied instance, exited
// while it served (not in a stop, a retirement or a replacement).
func (s *Supervisor) webExited(r *rel, in *instance) {
	if _, ok := s.tab.pauseWeb(r, in); ok {
		s.emit(events.TrafficPaused, map[string]any{events.KeyReleaseID: r.id, events.KeyProcessID: in.proc.ID(),
			events.KeyReason: "the proxied process exited; traffic resumes once it runs again and owns its port"})
	}
}

// webRestarted watches in, just restarted after a crash, until traffic may
// go back to it (see resumeAfterCrash).
func (s *Supervisor) webRestarted(r *rel, in *instance) {
	l, ok := s.tab.pausedWeb(r, in)
	if !ok || !s.tab.addBackground(&s.bg) {
		return
	}
	go func() {
		defer s.bg.Done()
		s.resumeAfterCrash(r, l, in)
	}()
}

// resumeAfterCrash waits until in, the proxied instance of run l of r,
// restarted after a crash, is ready (health check, or listening without
// one) and every listener on its port is the release's; then traffic
// resumes. A process that fails its health check but owns its port gets
// the traffic back, as it did before it crashed. A port held by someone
// else starts a replacement on a new port. If in exits again, its next
// restart watches anew.
func (s *Supervisor) resumeAfterCrash(r *rel, l *run, in *instance) {
	ctx, cancel := context.WithCancel(s.life)
	defer cancel()
	host, port := l.cfg.Proxy.UpstreamHost, s.tab.runPorts(l)[in.cfg.ID]
	thisRun := in.proc.Exited() // closed when the run being watched exits
	for {
		err := s.waitReady(ctx, r, in, host, port, nil)
		var he *release.HealthError
		if errors.As(err, &he) || errors.Is(err, release.ErrNotListening) {
			// Not healthy (or not listening) in time: whether it may take
			// traffic again is up to who owns the port.
			err = s.checkOwner(ctx, r, host, port)
		}
		var le *release.ListenerError
		switch {
		case err == nil:
			if s.tab.resumeWeb(r, l, in) {
				s.emit(events.TrafficResumed, map[string]any{events.KeyReleaseID: r.id, events.KeyProcessID: in.proc.ID()})
			}
			return
		case errors.As(err, &le):
			s.replaceSoon(r, in, whyPortTaken)
			return
		case !errors.Is(err, release.ErrNotListening):
			return // it exited again (its next restart watches), or shutdown
		}
		select {
		case <-thisRun:
			return
		default:
		}
		if _, ok := s.tab.pausedWeb(r, in); !ok {
			return
		}
	}
}
