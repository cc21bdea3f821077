package daemon

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// summary is the one-line STATUS= text: what serves, what drains, what
// failed. draining says whether a release is draining, whose connection
// count changes without an event.
func (d *daemon) summary() (line string, draining bool) {
	c := d.sup.Summary()
	parts := []string{}
	if c.ActiveID != "" {
		parts = append(parts, "active "+c.ActiveID)
	} else {
		parts = append(parts, "no active release")
	}
	if c.Canary != "" {
		parts = append(parts, "canary "+c.Canary)
	}
	if len(c.Draining) > 0 {
		parts = append(parts, "draining "+strings.Join(c.Draining, ", "))
	}
	if len(c.FailedProcesses) > 0 {
		parts = append(parts, "failed: "+strings.Join(c.FailedProcesses, ", "))
	}
	if c.DeployInProgress != "" {
		parts = append(parts, c.DeployInProgress)
	}
	return strings.Join(parts, "; "), len(c.Draining) > 0
}

// statusRefresh is how often STATUS= is recomputed while a release drains,
// for its falling connection count; otherwise only events change it.
const statusRefresh = 5 * time.Second

// statusLoop keeps STATUS= current: after events, and every statusRefresh
// while a release drains. An idle daemon does not wake up for it.
func (d *daemon) statusLoop(ctx context.Context, dirty <-chan struct{}) {
	last := ""
	var refresh <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-dirty:
		case <-refresh:
		}
		s, draining := d.summary()
		if s != last {
			d.notifier.Status(s)
			last = s
		}
		refresh = nil
		if draining {
			refresh = time.After(statusRefresh)
		}
	}
}

// watchdogLoop pings every interval, but only after probe succeeded within
// that interval: a daemon whose core is wedged stops pinging and gets
// restarted by systemd instead of holding the port while serving nothing.
func watchdogLoop(ctx context.Context, interval time.Duration, probe func(context.Context) error, ping func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, interval)
		err := probe(pctx)
		cancel()
		if err == nil {
			ping()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe checks that the daemon's main loop answers, that the supervisor's
// state owner answers, and that the proxy accept loop takes connections.
func (d *daemon) probe(ctx context.Context, ln *countingListener) error {
	reply := make(chan struct{})
	select {
	case d.alive <- reply:
	case <-ctx.Done():
		return fmt.Errorf("main loop did not answer: %w", ctx.Err())
	}
	<-reply // closed by the loop as soon as it received it
	done := make(chan struct{})
	go func() {
		d.sup.Summary() // takes the core's lock
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("supervisor did not answer: %w", ctx.Err())
	}
	before := ln.accepts.Load()
	addr := ln.Addr().String()
	if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(a.Port))
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("proxy listener: %w", err)
	}
	defer conn.Close()
	for ln.accepts.Load() == before {
		select {
		case <-ctx.Done():
			return fmt.Errorf("proxy accept loop did not take a connection: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// countingListener counts accepted connections for the watchdog probe.
type countingListener struct {
	net.Listener
	accepts atomic.Uint64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepts.Add(1)
	}
	return c, err
}

// reload re-reads the config on SIGHUP. Changes that would need new
// listeners are refused (the running config stays); everything else is
// stored and applies as its reload class says (see config.Diff). It runs
// beside the main loop; when ctx ends (the daemon stops) the evaluation is
// abandoned and nothing changes.
func (d *daemon) reload(ctx context.Context, load func(context.Context) (*config.Config, error)) {
	d.notifier.Reloading()
	if load == nil {
		d.log.Emit(events.ConfigReloadRefused, map[string]any{events.KeyError: "the daemon was started without a config file to re-read"})
		d.ready()
		return
	}
	next, err := load(ctx)
	if ctx.Err() != nil {
		// Stopping: STOPPING=1 follows, not READY=1.
		d.log.Emit(events.ConfigReloadRefused, map[string]any{events.KeyError: "the daemon is stopping", "kept": "the running config"})
		return
	}
	defer d.ready()
	if err != nil {
		d.log.Emit(events.ConfigReloadRefused, map[string]any{events.KeyError: err.Error(), "kept": "the running config"})
		return
	}
	cur := d.cfg.Load()
	if why := listenerChange(cur, next); why != "" {
		d.log.Emit(events.ConfigReloadRefused, map[string]any{events.KeyError: why + "; restart the daemon to apply this change", "kept": "the running config"})
		return
	}
	d.adopt(next)
	d.sup.SetConfig(next)
	d.log.Emit(events.ConfigReloaded, map[string]any{events.KeyPath: next.Path, "processes": len(next.Processes)})
}

// ready ends a reload: READY=1 with the current summary.
func (d *daemon) ready() {
	s, _ := d.summary()
	d.notifier.Ready(s)
}

// adopt makes next the daemon's own config (status, shutdown and the next
// SIGHUP's comparison read it) and applies its live fields. A SIGHUP calls
// it, and so does the supervisor once a deploy adopted a re-read config.
func (d *daemon) adopt(next *config.Config) {
	d.cfg.Store(next)
	d.proxy.SetTrustedProxies(next.Proxy.TrustedProxies)     // live: the next request uses it
	d.proxy.SetHostHealthPath(next.Proxy.HostHealthPath)     // live too
	d.proxy.SetUpstreamTimeout(next.Proxy.UpstreamTimeout()) // for the backends of the next deploy on
	d.proxy.SetCrashHold(next.Proxy.HoldTimeout())           // live: requests that fail from now on
	d.traffic.reconfigure(next)                              // live: maintenance's bypass and Retry-After
	d.warnUnitSettings(next)
}

// warnUnitSettings says, once per daemon, that the processes' systemd unit
// settings (sandboxing, limits) are not applied: with runtime 'auto' on a
// host where the daemon is no systemd service, processes run as its
// children. (runtime 'exec' with unit settings does not load at all.)
// Once, because every deploy re-reads the config, and the answer only
// changes with a restart of the daemon.
func (d *daemon) warnUnitSettings(cfg *config.Config) {
	if !d.execRuntime {
		return
	}
	var ids []string
	for i := range cfg.Processes {
		if p := &cfg.Processes[i]; len(cfg.UnitSettingsFor(p)) > 0 {
			ids = append(ids, p.ID)
		}
	}
	if len(ids) == 0 || !d.unitWarned.CompareAndSwap(false, true) {
		return
	}
	d.log.Emit(events.UnitSettingsIgnored, map[string]any{
		"processes": ids,
		events.KeyError: "the exec runtime runs processes as the daemon's children and cannot apply systemd unit settings; " +
			"run the daemon as a systemd service (runtime 'auto') or set runtime: 'systemd'",
	})
}

// listenerChange names each changed field that needs new sockets or a new
// state file, i.e. a daemon restart (config.ReloadRestart), or returns "".
func listenerChange(a, b *config.Config) string {
	var why, proxyFields []string
	for _, ch := range config.Diff(a, b) {
		switch {
		case ch.Reload != config.ReloadRestart:
		case ch.Path == "proxy.host" || ch.Path == "proxy.port":
			proxyFields = append(proxyFields, ch.Path)
		default:
			why = append(why, ch.String())
		}
	}
	if len(proxyFields) > 0 {
		// Host and port are one listening socket: name it once, by its address.
		why = append([]string{fmt.Sprintf("proxy address changed from %s to %s (%s)",
			a.ProxyAddr(), b.ProxyAddr(), strings.Join(proxyFields, ", "))}, why...)
	}
	return strings.Join(why, "; ")
}
