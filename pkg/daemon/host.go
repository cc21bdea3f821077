package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// drainPoll is how often a drain with wait looks at the request count:
// often enough that the quiet period ends close to when it says, rare
// enough to cost nothing.
const drainPoll = 50 * time.Millisecond

// drainProgressEvery spaces a waiting drain's progress lines.
const drainProgressEvery = time.Second

// hostResult is the host's state now.
func (d *daemon) hostResult(changed bool) control.HostResult {
	return control.HostResult{Drained: d.proxy.HostDrained(), Changed: changed, Healthy: d.proxy.HostHealthy(),
		HealthPath: d.cfg.Load().Proxy.HostHealthPath}
}

// fillHost adds the drain state to a status's proxy section (one read
// of the proxy's flag: the time and the flag agree).
func (d *daemon) fillHost(p *control.ProxyInfo) {
	if since, ok := d.proxy.HostDrainedSince(); ok {
		p.HostDrained, p.HostDrainedSince = true, control.At(since)
	}
}

// drainHost turns the health answer to 503 (the proxy owns the flag; the
// event marks the state file dirty, so a restarted daemon stays drained)
// and, with Wait, answers once no new request arrived for the quiet
// period: the load balancer has stopped sending. Requests that still come
// are served all along.
func (d *daemon) drainHost(ctx context.Context, req control.DrainHostRequest, progress func(control.Progress)) (control.HostResult, error) {
	if d.cfg.Load().Proxy.HostHealthPath == "" {
		return control.HostResult{}, control.Errorf(control.CodeBadRequest,
			"drain-host needs proxy.hostHealthPath: without a health path no load balancer can see that the host is drained; "+
				"set it in the config, reload the daemon (systemctl reload rollbridge@APP, or SIGHUP) and point the balancer's health check at it")
	}
	changed := d.proxy.SetHostDrained(true)
	if changed {
		d.log.Emit(events.HostDrained, map[string]any{events.KeyPath: d.cfg.Load().Proxy.HostHealthPath})
	}
	if !req.Wait {
		return d.hostResult(changed), nil
	}
	quiet, timeout := req.Quiet, req.Timeout
	if quiet <= 0 {
		quiet = control.DefaultDrainQuiet
	}
	if timeout <= 0 {
		timeout = control.DefaultDrainTimeout
	}
	since, err := waitQuiet(ctx, d.proxy, quiet, timeout, progress)
	if err != nil {
		return control.HostResult{}, err
	}
	res := d.hostResult(changed)
	res.QuietMs = max(since.Milliseconds(), 1)
	return res, nil
}

// waitQuiet waits until the proxy routed no new request for quiet and
// returns how long that has been. It fails after timeout, when the host is
// undrained meanwhile, or when ctx ends. The request count of the active
// backend (one atomic read per poll, nothing on the request path) is the
// signal; a switch to another backend counts as traffic.
func waitQuiet(ctx context.Context, px *proxy.Proxy, quiet, timeout time.Duration, progress func(control.Progress)) (time.Duration, error) {
	start := time.Now()
	count := func() (*proxy.Backend, uint64) {
		b := px.Active()
		if b == nil {
			return nil, 0
		}
		return b, b.Requests()
	}
	lastB, lastN := count()
	lastChange, lastProgress := start, start
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("drain-host: stopped waiting: %w", ctx.Err())
		case now := <-tick.C:
			if !px.HostDrained() {
				return 0, fmt.Errorf("the host was undrained while drain-host waited for traffic to stop")
			}
			if b, n := count(); b != lastB || n != lastN {
				lastB, lastN, lastChange = b, n, now
			}
			since := now.Sub(lastChange)
			if since >= quiet {
				return since, nil
			}
			if now.Sub(start) >= timeout {
				return 0, fmt.Errorf("the host is drained, but requests still arrived %s ago, after waiting %s for a quiet period of %s: "+
					"is the load balancer's health check pointed at proxy.hostHealthPath, and does it stop sending within that time?",
					since.Round(time.Millisecond), timeout, quiet)
			}
			if now.Sub(lastProgress) >= drainProgressEvery {
				lastProgress = now
				progress(control.Progress{Message: "waiting for traffic to stop", Data: map[string]any{
					"quietMs": quiet.Milliseconds(), "sinceLastRequestMs": since.Milliseconds()}})
			}
		}
	}
}

// undrainHost turns the health answer back to 200 (while a release is
// active).
func (d *daemon) undrainHost() control.HostResult {
	changed := d.proxy.SetHostDrained(false)
	if changed {
		d.log.Emit(events.HostUndrained, map[string]any{events.KeyPath: d.cfg.Load().Proxy.HostHealthPath})
	}
	return d.hostResult(changed)
}
