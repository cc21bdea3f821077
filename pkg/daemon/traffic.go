package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// traffic owns the daemon's traffic controls (docs/traffic.md): the pause
// and its deadline timer, and maintenance with what the state file keeps
// of it. The proxy holds the mode that requests read; this type is its
// only writer, so a command, the pause's timer and a config reload never
// undo each other.
type traffic struct {
	px  *proxy.Proxy
	log events.Sink
	cfg func() *config.Config

	mu    sync.Mutex
	timer *time.Timer // the pause's deadline; nil when not paused
	seq   uint64      // bumped by every pause and resume: a timer of an older pause does nothing
	since time.Time   // when the pause began
	maint *state.Maintenance
}

// result is the traffic state, as pause, resume and maintenance answer.
func (t *traffic) result() control.TrafficResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.resultLocked()
}

func (t *traffic) resultLocked() control.TrafficResult {
	r := control.TrafficResult{Held: t.px.Held()}
	if until, ok := t.px.Paused(); ok {
		r.Paused, r.PausedUntil = true, control.At(until)
	}
	if m := t.maint; m != nil {
		r.Maintenance = &control.MaintenanceInfo{Since: control.At(m.Since), Message: m.Message, Page: m.Page != ""}
	}
	return r
}

// fill adds the traffic state to a status's proxy section.
func (t *traffic) fill(p *control.ProxyInfo) {
	r := t.result()
	p.Paused, p.PausedUntil, p.Maintenance = r.Paused, r.PausedUntil, r.Maintenance
}

// pause holds new requests for timeout (0: proxy.pauseTimeoutMs), then
// releases them; with drain it returns once the active release has no
// HTTP request in flight (bounded by the pause and ctx).
func (t *traffic) pause(ctx context.Context, req control.PauseRequest) (control.TrafficResult, error) {
	cfg := t.cfg()
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	if timeout == 0 {
		timeout = cfg.Proxy.PauseTimeout()
	}
	if limit := cfg.Proxy.MaxPauseTimeout(); timeout > limit {
		return control.TrafficResult{}, control.Errorf(control.CodeBadRequest,
			"pause timeout %s is more than proxy.maxPauseTimeoutMs (%s); pause for less, or raise it in the config", timeout, limit)
	}
	until := time.Now().Add(timeout)
	t.mu.Lock()
	t.seq++
	seq := t.seq
	if t.timer != nil {
		t.timer.Stop()
	} else {
		t.since = time.Now()
	}
	t.px.PauseTraffic(until)
	t.timer = time.AfterFunc(timeout, func() { t.expire(seq) })
	t.mu.Unlock()
	t.log.Emit(events.TrafficPaused, map[string]any{"reason": "pause command", "timeoutMs": timeout.Milliseconds(),
		"until": until.UTC(), "drain": req.Drain})
	if !req.Drain {
		return t.result(), nil
	}
	if b := t.px.Active(); b != nil {
		dctx, cancel := context.WithDeadline(ctx, until)
		err := b.DrainRequests(dctx)
		cancel()
		if err != nil {
			return control.TrafficResult{}, control.Errorf(control.CodeFailed,
				"paused, but the requests in flight did not finish before the pause's timeout: %v", err)
		}
		t.log.Emit(events.TrafficDrained, map[string]any{events.KeyReleaseID: b.ReleaseID()})
	}
	r := t.result()
	r.Drained = true
	return r, nil
}

// resume ends the pause, if any; the held requests are released.
func (t *traffic) resume() control.TrafficResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endPauseLocked("resume command")
	return t.resultLocked()
}

// expire ends pause number seq at its deadline, unless a later pause or a
// resume came first.
func (t *traffic) expire(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq == t.seq {
		t.endPauseLocked("pause timeout")
	}
}

func (t *traffic) endPauseLocked(reason string) {
	t.seq++
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	held := t.px.Held()
	if t.px.ResumeTraffic() {
		t.log.Emit(events.TrafficResumed, map[string]any{"reason": reason, "held": held,
			"pausedMs": time.Since(t.since).Milliseconds()})
	}
}

// maintenance turns maintenance on or off.
func (t *traffic) maintenance(req control.MaintenanceRequest) control.TrafficResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !req.On {
		if t.maint != nil {
			since := t.maint.Since
			t.maint = nil
			t.px.SetMaintenance(nil)
			t.log.Emit(events.MaintenanceOff, map[string]any{"durationMs": time.Since(since).Milliseconds()})
		}
		return t.resultLocked()
	}
	since := time.Now()
	if t.maint != nil {
		since = t.maint.Since // a new message or page: the same maintenance
	}
	t.maint = &state.Maintenance{Since: since, Message: req.Message, Page: req.Page}
	t.applyLocked(t.cfg())
	t.log.Emit(events.MaintenanceOn, map[string]any{"message": req.Message, "page": req.Page != ""})
	return t.resultLocked()
}

// restore turns on the maintenance a previous daemon recorded, before
// any request is forwarded.
func (t *traffic) restore(m *state.Maintenance) {
	if m == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.maint = m
	t.applyLocked(t.cfg())
	t.log.Emit(events.MaintenanceOn, map[string]any{"message": m.Message, "page": m.Page != "", "restored": true})
}

// reconfigure applies a reloaded config's maintenance settings (bypass,
// Retry-After) to maintenance in force.
func (t *traffic) reconfigure(cfg *config.Config) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.maint != nil {
		t.applyLocked(cfg)
	}
}

func (t *traffic) applyLocked(cfg *config.Config) {
	mc := cfg.Proxy.Maintenance
	t.px.SetMaintenance(&proxy.Maintenance{Message: t.maint.Message, Page: t.maint.Page, RetryAfter: mc.RetryAfter(),
		Since: t.maint.Since, Bypass: proxy.Bypass{Header: mc.BypassHeader, Cookie: mc.BypassCookie, Token: mc.BypassToken,
			Clients: mc.BypassClients}})
}

// record is the maintenance for the state file (a copy), or nil.
func (t *traffic) record() *state.Maintenance {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.maint == nil {
		return nil
	}
	m := *t.maint
	return &m
}

// stop ends a pause as the daemon stops serving: what it holds goes to
// the release, which still runs, instead of waiting out the pause.
func (t *traffic) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endPauseLocked("daemon stopping")
}
