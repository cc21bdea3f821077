package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
)

// Defaults, named once so docs, validation and normalisation agree.
const (
	DefaultFile               = "rollbridge.jsonnet"
	DefaultProxyHost          = "127.0.0.1"
	DefaultProxyPort          = 8182
	DefaultHealthPath         = "/ping"
	DefaultHealthTimeoutMs    = 30000
	DefaultHealthIntervalMs   = 250
	DefaultDrainTimeoutMs     = 60000
	DefaultForceStopTimeoutMs = 10000
	DefaultHoldTimeoutMs      = 30000
	DefaultUpstreamTimeoutMs  = 60000
	DefaultCanaryCookie       = "rollbridge_canary"

	DefaultMaxHeld           = 4096
	DefaultHoldRelease       = 32
	DefaultPauseTimeoutMs    = 60000
	DefaultMaxPauseTimeoutMs = 900000
	DefaultRetryAfterMs      = 60000
	DefaultRestartDelayMs    = 1000
	DefaultOutputLines       = 50
	DefaultMemoryCheckMs     = 5000
	DefaultRetentionKeep     = 10
	DefaultStopSignal        = "SIGTERM"

	// RuntimeDir holds the default control socket (and, beside it, the
	// lock file and ensure-daemon's log and pid files). It is a fixed
	// path, not $XDG_RUNTIME_DIR or $TMPDIR, so the daemon and every
	// client compute the same default whoever runs them; and a directory
	// only root can write, not /tmp, so no other local user can put a
	// socket (or a symlink) there first. packaging/systemd's tmpfiles.d
	// entry creates it at boot.
	RuntimeDir = "/run/rollbridge"
)

// DefaultControlPath is control.path when the config leaves it out:
// RuntimeDir/<application>.sock. The original's /tmp/rollbridge-APP.sock
// let any local user bind that path before the daemon did.
func DefaultControlPath(application string) string {
	return filepath.Join(RuntimeDir, application+".sock")
}

// fieldSet records which fields the decoder took from the config, by the
// field's address in the Config being built, so applyDefaults fills exactly
// the others. Addresses rather than paths, because 0 and false are
// legitimate settings (drainTimeoutMs: 0, restoreOnStart: false) that a
// zero check cannot tell from "absent". Fields that have no default (port,
// lifecycle, memory, control.mode) are assigned without being recorded.
type fieldSet map[any]bool

// take stores a decoded value and records that field as given.
func take[T any](c *collector, field *T, v T) {
	*field = v
	c.set[field] = true
}

// orDefault sets field to v unless the config gave it.
func orDefault[T any](set fieldSet, field *T, v T) {
	if !set[field] {
		*field = v
	}
}

// applyDefaults fills every field the config left out, and every field whose
// value was rejected (the Config is then only used to word further issues).
// It is the one place defaults are applied; the order matters only where a
// default is another field's value (gracefulStopMs is proxy.forceStopTimeoutMs).
func applyDefaults(cfg *Config, set fieldSet) {
	orDefault(set, &cfg.Application, defaultApplication(cfg.Path))
	orDefault(set, &cfg.RestoreOnStart, true)
	orDefault(set, &cfg.Runtime, RuntimeAuto)
	if cfg.Application != "" {
		orDefault(set, &cfg.Control.Path, DefaultControlPath(cfg.Application))
	}

	p := &cfg.Proxy
	orDefault(set, &p.Host, DefaultProxyHost)
	orDefault(set, &p.Port, DefaultProxyPort)
	orDefault(set, &p.UpstreamHost, defaultUpstreamHost(p.Host))
	orDefault(set, &p.HealthPath, DefaultHealthPath)
	orDefault(set, &p.HealthTimeoutMs, DefaultHealthTimeoutMs)
	orDefault(set, &p.DrainTimeoutMs, DefaultDrainTimeoutMs)
	orDefault(set, &p.ForceStopTimeoutMs, DefaultForceStopTimeoutMs)
	orDefault(set, &p.HoldTimeoutMs, DefaultHoldTimeoutMs)
	orDefault(set, &p.UpstreamTimeoutMs, DefaultUpstreamTimeoutMs)
	orDefault(set, &p.CanaryCookie, DefaultCanaryCookie)
	orDefault(set, &p.TrustedProxies, []netip.Prefix{})
	orDefault(set, &p.MaxHeld, DefaultMaxHeld)
	orDefault(set, &p.HoldRelease, DefaultHoldRelease)
	orDefault(set, &p.PauseTimeoutMs, DefaultPauseTimeoutMs)
	orDefault(set, &p.MaxPauseTimeoutMs, DefaultMaxPauseTimeoutMs)
	orDefault(set, &p.Maintenance.RetryAfterMs, DefaultRetryAfterMs)
	orDefault(set, &p.Maintenance.BypassClients, []netip.Prefix{})

	orDefault(set, &cfg.ReleaseRetention.Keep, DefaultRetentionKeep)

	if lt := cfg.LegacyTakeover; lt != nil {
		orDefault(set, &lt.Screens, []string{})
		orDefault(set, &lt.Processes, []LegacyProcess{})
		orDefault(set, &lt.ForceStopTimeoutMs, p.ForceStopTimeoutMs)
		for i := range lt.Processes {
			orDefault(set, &lt.Processes[i].Name, fmt.Sprintf("legacy process %d", i+1))
		}
	}

	for i := range cfg.Processes {
		pr := &cfg.Processes[i]
		orDefault(set, &pr.Policy, Companion)
		orDefault(set, &pr.DeployStrategy, Persistent)
		orDefault(set, &pr.Cwd, "{{releasePath}}")
		orDefault(set, &pr.Env, map[string]string{})
		orDefault(set, &pr.StopSignal, DefaultStopSignal)
		orDefault(set, &pr.GracefulStopMs, GraceMs(p.ForceStopTimeoutMs))
		orDefault(set, &pr.RestartDelayMs, DefaultRestartDelayMs)
		orDefault(set, &pr.Replicas, 1)
		orDefault(set, &pr.OutputLines, DefaultOutputLines)
		orDefault(set, &pr.Restart.BackoffFactor, 1)
		// Only the proxied process is health-checked, so only it gets a
		// default check; a rejected health value stays unset.
		if pr.Policy == Proxied {
			orDefault(set, &pr.Health, &Health{})
		}
		if h := pr.Health; h != nil && !h.Disabled {
			orDefault(set, &h.Path, p.HealthPath)
			orDefault(set, &h.TimeoutMs, p.HealthTimeoutMs)
			orDefault(set, &h.IntervalMs, DefaultHealthIntervalMs)
		}
		if m := pr.Memory; m != nil {
			orDefault(set, &m.CheckIntervalMs, DefaultMemoryCheckMs)
		}
	}
}

// defaultApplication is the name of the directory holding the config.
func defaultApplication(configPath string) string {
	return filepath.Base(filepath.Dir(configPath))
}

// defaultUpstreamHost is proxy.host, except that a wildcard bind address is
// not something to connect to.
func defaultUpstreamHost(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return host
}
