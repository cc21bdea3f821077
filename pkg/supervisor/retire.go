package supervisor

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// retire moves prev, the release that was active until now, to draining:
// nonBlockingDrain companions start stopping now; the rest stop once its
// connections are gone or the drain times out. The drain runs in a
// goroutine owned by the Supervisor (Shutdown waits for it). cfg is the
// config of the release that replaced prev: its drain timeout, stop
// settings and nonBlockingDrain govern the retirement, so a reloaded
// config's retirement settings reach processes started under the old one.
func (s *Supervisor) retire(prev *rel, cfg *config.Config) error {
	ctx, cancel := context.WithTimeout(s.life, cfg.Proxy.DrainTimeout())
	l, procs, backend, err := s.tab.retire(prev, cancel)
	if err != nil {
		cancel()
		return err
	}
	// No new request reaches prev: the proxy's idle connections to its app
	// go now, so they cannot hold up the app's own graceful stop.
	backend.Retire()
	for _, in := range procs {
		in.proc.SetAutoRestart(false) // only an active release's processes are restarted
		nonBlocking := in.cfg.NonBlockingDrain
		if p := cfg.ProcessByID(in.cfg.ID); p != nil {
			in.proc.SetStopSettings(stopSettings(p))
			nonBlocking = p.NonBlockingDrain
		}
		if nonBlocking {
			s.bg.Add(1)
			go func() {
				defer s.bg.Done()
				_ = in.proc.Stop(context.Background()) // bounded by its own stop sequence
			}()
		}
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer cancel()
		s.emit(events.ReleaseDrained, drainReport(ctx, backend, map[string]any{events.KeyReleaseID: prev.id}))
		// l, not prev's current run: if a rollback relaunched prev meanwhile,
		// it stopped l first, and this stop finds nothing left to do.
		if err := s.stopRun(prev, l); err != nil {
			s.internalError(err)
		}
		s.prune()
	}()
	return nil
}

// drainReport drains b under ctx, closes what is left, and returns data
// with the keys of a drained event added:
//   - timedOut: the drain timeout ended it (not a rollback to the release
//     or a shutdown, which cancel ctx; those set interrupted);
//   - connectionsAtStart: requests and upgraded connections open when the
//     drain began;
//   - connectionsClosed: the upgraded connections CloseConnections cut;
//   - requestsLeftRunning: plain HTTP requests still in flight, which are
//     not cut here but end with the process (its stop sequence bounds them).
func drainReport(ctx context.Context, b *proxy.Backend, data map[string]any) map[string]any {
	http0, ws0 := b.Connections()
	err := b.Drain(ctx)
	http1, ws1 := b.Connections()
	b.CloseConnections()
	data["timedOut"] = errors.Is(err, context.DeadlineExceeded)
	data["interrupted"] = errors.Is(err, context.Canceled)
	data["connectionsAtStart"] = http0 + ws0
	data["connectionsClosed"] = ws1
	data["requestsLeftRunning"] = http1
	return data
}

// stopRelease stops r's current run; see stopRun.
func (s *Supervisor) stopRelease(r *rel) error { return s.stopRun(r, s.tab.current(r)) }

// stopRun stops every process of run l of release r and marks r stopped:
// first the proxied process and companions, in parallel, then the handoff
// services, which they may need until the end of their own stop. Concurrent
// and later callers for the same run wait for the first one's stop and
// return nil. It returns only an illegal state change, which is a bug.
func (s *Supervisor) stopRun(r *rel, l *run) error {
	procs, backends, first := s.tab.beginStop(r, l)
	if !first {
		<-l.stopped
		return nil
	}
	var dependents, handoff []*process.Process
	for _, in := range procs {
		if in.cfg.IsHandoff() {
			handoff = append(handoff, in.proc)
		} else {
			dependents = append(dependents, in.proc)
		}
	}
	stopAll(dependents)
	stopAll(handoff)
	for _, b := range backends {
		b.CloseConnections()
	}
	served, err := s.tab.finishStop(r, l)
	if served {
		s.emit(events.ReleaseStopped, map[string]any{events.KeyReleaseID: r.id})
	}
	return err
}

// prune applies the release retention of the current config.
func (s *Supervisor) prune() { s.tab.prune(time.Now(), s.cfg.Load().ReleaseRetention) }

// internalError reports a broken invariant (an illegal release state
// change) that has no caller to return to. The change was not made; the
// daemon keeps running.
func (s *Supervisor) internalError(err error) {
	s.emit(events.InternalError, map[string]any{events.KeyError: err.Error()})
}

// stopAll stops processes in parallel and returns when all are stopped.
// Stop reports through events and is bounded by each process's own stop
// sequence, so there is nothing to return.
func stopAll(procs []*process.Process) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.Stop(context.Background()) // see above
		}()
	}
	wg.Wait()
}

func unitProcs(units []*unit) []*process.Process {
	out := make([]*process.Process, len(units))
	for i, u := range units {
		out[i] = u.proc
	}
	return out
}
