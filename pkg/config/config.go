package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Policy is a process's lifecycle policy.
type Policy string

// The four policies of the spec.
const (
	Proxied   Policy = "proxied"
	Companion Policy = "companion"
	Singleton Policy = "singleton"
	Service   Policy = "service"
)

// Policies lists every valid policy, in documentation order.
var Policies = []Policy{Proxied, Companion, Singleton, Service}

// DeployStrategy says how a service is carried across deploys (Node
// rollbridge 0.1.10).
type DeployStrategy string

// The deploy strategies. Every process has one; only a service may be
// Handoff.
const (
	// Persistent: one daemon-wide instance with a stable port, kept across
	// deploys; each deploy only updates the definition its restarts use.
	Persistent DeployStrategy = "persistent"
	// Handoff: one instance per release, started before the release's
	// companions on a fresh port of its range, and stopped after the
	// retiring release's other processes.
	Handoff DeployStrategy = "handoff"
)

// Config is a loaded, normalised configuration. Its JSON form (encoding/json)
// is what `rollbridgectl validate --json` prints under "normalized", and it
// loads back to an equal Config.
//
// The struct definitions below are the schema (see schema.go): `json` names
// the field in the config file, `reload` says what a change to it takes in a
// running daemon (ReloadLive, ReloadNextDeploy, ReloadRestart). A struct-valued
// field's class is at least that of every field inside it.
type Config struct {
	// Application names the default control socket, the systemd units and
	// the state, so it cannot change under a running daemon.
	Application string  `json:"application" reload:"restart"`
	Control     Control `json:"control" reload:"restart"`
	Proxy       Proxy   `json:"proxy" reload:"restart"`
	// Processes: which processes exist, and each one's policy and
	// deployStrategy, are the topology the running services and singletons
	// were built from, so changing them takes a restart (entries are
	// matched by id; reordering them is no change). Everything else about
	// a process applies from the next deploy.
	Processes        []Process        `json:"processes" reload:"restart"`
	ReleaseRetention ReleaseRetention `json:"releaseRetention" reload:"next-deploy"`
	// Runtime (extension, default auto) says how processes run: as
	// transient systemd units (RuntimeSystemd), as the daemon's children
	// (RuntimeExec), or the first where the daemon runs as a systemd
	// service and D-Bus answers, else the second (RuntimeAuto).
	Runtime Runtime `json:"runtime" reload:"restart"`
	// User and Group (extension) are who the processes run as, unless a
	// process names its own; unset: the daemon's own user (and that
	// user's primary group when only User is set). Names or numbers,
	// resolved on the host at every deploy.
	User  string `json:"user,omitempty" reload:"next-deploy"`
	Group string `json:"group,omitempty" reload:"next-deploy"`
	// Systemd (extension) are the unit settings (sandboxing, resource
	// limits) of every process's unit under the systemd runtime, unless
	// a process sets the same setting itself; see UnitSettings.
	Systemd UnitSettings `json:"systemd,omitempty" reload:"next-deploy"`
	// StatePath is opened at start and written from then on.
	StatePath string `json:"statePath,omitempty" reload:"restart"`
	// RestoreOnStart (extension, default true): when the state file names an
	// active release and none of its processes survived, redeploy it at start.
	// Only a start reads it, so a reload has nothing to wait for.
	RestoreOnStart bool `json:"restoreOnStart" reload:"live"`
	// LegacyTakeover is read by rollbridgectl predeploy-cleanup from the
	// file itself, never by the daemon.
	LegacyTakeover *LegacyTakeover `json:"legacyTakeover,omitempty" reload:"live"`
	// Metrics (extension, default off) is the Prometheus listener; see
	// metrics.go.
	Metrics *Metrics `json:"metrics,omitempty" reload:"restart"`
	// AccessLog (extension, default off): one entry per request; see
	// metrics.go.
	AccessLog *AccessLog `json:"accessLog,omitempty" reload:"restart"`

	// Path is the absolute path of the file this config was loaded from.
	Path string `json:"-"`
}

// Runtime is config.runtime: how the daemon runs processes.
type Runtime string

// The runtimes.
const (
	RuntimeAuto    Runtime = "auto"
	RuntimeSystemd Runtime = "systemd"
	RuntimeExec    Runtime = "exec"
)

func (r Runtime) String() string { return string(r) }

// Control configures the Unix control socket. The daemon binds it at start.
type Control struct {
	Path  string    `json:"path" reload:"restart"`
	Mode  *FileMode `json:"mode,omitempty" reload:"restart"`
	Owner *IDOrName `json:"owner,omitempty" reload:"restart"`
	Group *IDOrName `json:"group,omitempty" reload:"restart"`
}

// Proxy configures the stable listener and shared defaults.
type Proxy struct {
	Host               string `json:"host" reload:"restart"`
	Port               int    `json:"port" reload:"restart"`
	UpstreamHost       string `json:"upstreamHost" reload:"next-deploy"`
	HealthPath         string `json:"healthPath" reload:"next-deploy"`
	HealthTimeoutMs    int64  `json:"healthTimeoutMs" reload:"next-deploy"`
	DrainTimeoutMs     int64  `json:"drainTimeoutMs" reload:"next-deploy"`
	ForceStopTimeoutMs int64  `json:"forceStopTimeoutMs" reload:"next-deploy"`
	// TrustedProxies (extension, default empty) are the peers whose
	// X-Forwarded-For entries the proxy believes: the client is the rightmost
	// entry that is not one of them. A single address is a /32 or /128
	// prefix; an IPv4-mapped IPv6 address or prefix is stored as IPv4.
	// It describes the front end, not a release, so it applies live.
	TrustedProxies []netip.Prefix `json:"trustedProxies" reload:"live"`
	// HoldTimeoutMs (extension, default 30000) bounds how long a request
	// that arrives while the daemon starts (restores, boots a release), or
	// while the active release's proxied process restarts after a crash,
	// waits for it instead of being answered 503 at once; past it the
	// answer is 503 with Retry-After. 0 turns the hold off. The start's
	// hold reads it when the daemon starts; a crash's, from the config the
	// release was deployed with.
	HoldTimeoutMs int64 `json:"holdTimeoutMs" reload:"live"`
	// UpstreamTimeoutMs (extension, default 60000, nginx's
	// proxy_read_timeout) bounds how long the proxy waits for the head of
	// the app's answer (a WebSocket handshake's too) once the request is
	// sent; past it the client gets 504 and a proxy error is reported. The
	// body is not bounded: streams and long downloads may take as long as
	// they take. 0 waits for ever. A release keeps the value it was first
	// served with, so a reload applies from the next deploy.
	UpstreamTimeoutMs int64 `json:"upstreamTimeoutMs" reload:"next-deploy"`
	// CanaryCookie (extension, default "rollbridge_canary") names the
	// cookie that keeps a client on its side of a canary (deploy
	// --canary): the proxy sets it, its value the side's release id. ""
	// sets no cookie: the side is then a hash of the client's address
	// (trustedProxies count). A canary keeps what it started with.
	CanaryCookie string `json:"canaryCookie" reload:"next-deploy"`

	// HostHealthPath (extension, default "": off) is a path the proxy
	// answers itself for a load balancer's health check, before routing:
	// 200 while a release is active and the host is not drained
	// (rollbridgectl drain-host), else 503. Requests for it never reach the
	// app. It applies live.
	HostHealthPath string `json:"hostHealthPath" reload:"live"`

	// MaxHeld (extension, default 4096) bounds how many requests may wait
	// at once, in a hold or a pause; one more is answered 503 with
	// Retry-After at once. Each waiting request costs a goroutine and its
	// client's connection.
	MaxHeld int `json:"maxHeld" reload:"restart"`
	// HoldRelease (extension, default 32) bounds how many waiting requests
	// are forwarded at once when they are released (a backend came, a
	// pause ended): the next goes as soon as one has the head of its
	// answer, so a backend that just started is not handed the whole queue
	// at the same instant.
	HoldRelease int `json:"holdRelease" reload:"restart"`
	// HoldBeforeFirstDeploy (extension, default false) makes a daemon that
	// starts with no release to restore hold requests (holdTimeoutMs each)
	// until its first deploy serves, instead of answering 503 at once.
	HoldBeforeFirstDeploy bool `json:"holdBeforeFirstDeploy" reload:"restart"`
	// PauseTimeoutMs (extension, default 60000) is how long `rollbridgectl
	// pause` holds requests when it is given no --timeout; at its end the
	// requests are released to the active release. MaxPauseTimeoutMs
	// (default 900000) is the longest --timeout accepted.
	PauseTimeoutMs    int64 `json:"pauseTimeoutMs" reload:"live"`
	MaxPauseTimeoutMs int64 `json:"maxPauseTimeoutMs" reload:"live"`
	// Maintenance configures maintenance mode's answer and who bypasses it.
	Maintenance Maintenance `json:"maintenance" reload:"live"`
}

// Maintenance (extension) configures `rollbridgectl maintenance on`.
type Maintenance struct {
	// RetryAfterMs (default 60000) is the answer's Retry-After, rounded up
	// to whole seconds.
	RetryAfterMs int64 `json:"retryAfterMs" reload:"live"`
	// BypassHeader and BypassCookie name a request header and a cookie
	// whose value, equal to BypassToken, lets a request through to the
	// release. Both need BypassToken.
	BypassHeader string `json:"bypassHeader" reload:"live"`
	BypassCookie string `json:"bypassCookie" reload:"live"`
	BypassToken  string `json:"bypassToken" reload:"live"`
	// BypassClients are client addresses or networks let through; the
	// client is found as for trustedProxies.
	BypassClients []netip.Prefix `json:"bypassClients" reload:"live"`
}

// RetryAfter is RetryAfterMs as a Duration.
func (m Maintenance) RetryAfter() time.Duration { return ms(m.RetryAfterMs) }

// PauseTimeout is PauseTimeoutMs as a Duration.
func (p Proxy) PauseTimeout() time.Duration { return ms(p.PauseTimeoutMs) }

// MaxPauseTimeout is MaxPauseTimeoutMs as a Duration.
func (p Proxy) MaxPauseTimeout() time.Duration { return ms(p.MaxPauseTimeoutMs) }

// HealthTimeout is HealthTimeoutMs as a Duration.
func (p Proxy) HealthTimeout() time.Duration { return ms(p.HealthTimeoutMs) }

// DrainTimeout is DrainTimeoutMs as a Duration.
func (p Proxy) DrainTimeout() time.Duration { return ms(p.DrainTimeoutMs) }

// UpstreamTimeout is UpstreamTimeoutMs as a Duration; 0 means none.
func (p Proxy) UpstreamTimeout() time.Duration { return ms(p.UpstreamTimeoutMs) }

// HoldTimeout is HoldTimeoutMs as a Duration; 0 means no hold.
func (p Proxy) HoldTimeout() time.Duration { return ms(p.HoldTimeoutMs) }

// ForceStopTimeout is ForceStopTimeoutMs as a Duration.
func (p Proxy) ForceStopTimeout() time.Duration { return ms(p.ForceStopTimeoutMs) }

// ReleaseRetention bounds how many stopped releases the daemon remembers.
type ReleaseRetention struct {
	Keep     int   `json:"keep" reload:"next-deploy"`
	MaxAgeMs int64 `json:"maxAgeMs" reload:"next-deploy"`
}

// MaxAge is MaxAgeMs as a Duration; 0 means no age limit.
func (r ReleaseRetention) MaxAge() time.Duration { return ms(r.MaxAgeMs) }

// LegacyTakeover describes pre-Rollbridge processes predeploy-cleanup stops.
type LegacyTakeover struct {
	Screens            []string        `json:"screens" reload:"live"`
	Processes          []LegacyProcess `json:"processes" reload:"live"`
	ForceStopTimeoutMs int64           `json:"forceStopTimeoutMs" reload:"live"`
}

// ForceStopTimeout is ForceStopTimeoutMs as a Duration.
func (l LegacyTakeover) ForceStopTimeout() time.Duration { return ms(l.ForceStopTimeoutMs) }

// LegacyProcess matches processes whose command line contains every Includes string.
type LegacyProcess struct {
	Name     string   `json:"name" reload:"live"`
	Includes []string `json:"includes" reload:"live"`
}

// Process is one entry of processes[]. Every field but the topology (id,
// policy, deployStrategy) applies from the next deploy: a running process
// keeps the definition it was started with, except that a retiring release
// stops with the newest stop settings.
type Process struct {
	ID               string            `json:"id" reload:"restart"`
	Policy           Policy            `json:"policy" reload:"restart"`
	DeployStrategy   DeployStrategy    `json:"deployStrategy" reload:"restart"`
	Command          string            `json:"command" reload:"next-deploy"`
	Cwd              string            `json:"cwd" reload:"next-deploy"`
	Env              map[string]string `json:"env" reload:"next-deploy"`
	Port             *PortRange        `json:"port,omitempty" reload:"next-deploy"`
	Health           *Health           `json:"health,omitempty" reload:"next-deploy"`
	StopSignal       string            `json:"stopSignal" reload:"next-deploy"`
	NonBlockingDrain bool              `json:"nonBlockingDrain" reload:"next-deploy"`
	Lifecycle        *Lifecycle        `json:"lifecycle,omitempty" reload:"next-deploy"`
	GracefulStopMs   GraceMs           `json:"gracefulStopMs" reload:"next-deploy"`
	RestartDelayMs   int64             `json:"restartDelayMs" reload:"next-deploy"`
	Restart          Restart           `json:"restart" reload:"next-deploy"`
	Memory           *Memory           `json:"memory,omitempty" reload:"next-deploy"`
	Replicas         int               `json:"replicas" reload:"next-deploy"`
	OutputLines      int               `json:"outputLines" reload:"next-deploy"`
	// User and Group (extension) override the config's for this process
	// and its hooks; see Config.User.
	User  string `json:"user,omitempty" reload:"next-deploy"`
	Group string `json:"group,omitempty" reload:"next-deploy"`
	// Systemd (extension) overrides the config's unit settings for this
	// process, setting by setting; see Config.UnitSettingsFor.
	Systemd UnitSettings `json:"systemd,omitempty" reload:"next-deploy"`
}

// RunAs is who p runs as: its own user and group where set, else the
// config's; "" for the daemon's own.
func (c *Config) RunAs(p *Process) (user, group string) {
	user, group = c.User, c.Group
	if p.User != "" {
		user = p.User
		if p.Group == "" {
			group = "" // the process's user's own group, not the config's
		}
	}
	if p.Group != "" {
		group = p.Group
	}
	return user, group
}

// Users lists the users (names or numbers, as configured) that processes
// run as: the config's user and every process's own, without repeats;
// empty when every process runs as the daemon's user.
func (c *Config) Users() []string {
	var out []string
	seen := map[string]bool{}
	for _, u := range append([]string{c.User}, processUsers(c.Processes)...) {
		if u != "" && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

func processUsers(ps []Process) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.User
	}
	return out
}

// GracefulStop is GracefulStopMs as a Duration; for Indefinite it is
// negative (see GracefulStopIndefinite).
func (p *Process) GracefulStop() time.Duration { return ms(int64(p.GracefulStopMs)) }

// GracefulStopIndefinite reports gracefulStopMs: "indefinite".
func (p *Process) GracefulStopIndefinite() bool { return p.GracefulStopMs == Indefinite }

// GraceMs is gracefulStopMs: the milliseconds from the stop signal (or
// stopCommand) to SIGKILL, or Indefinite.
type GraceMs int64

// Indefinite is gracefulStopMs: "indefinite" (Node rollbridge 0.1.16): wait
// for the process group to exit however long that takes, and never send
// SIGKILL, for jobs that outlast any window.
const Indefinite GraceMs = -1

// MarshalJSON writes Indefinite as "indefinite", as it is configured, and
// any other value as its number.
func (g GraceMs) MarshalJSON() ([]byte, error) {
	if g == Indefinite {
		return []byte(`"indefinite"`), nil
	}
	return json.Marshal(int64(g))
}

// RestartDelay is RestartDelayMs as a Duration.
func (p *Process) RestartDelay() time.Duration { return ms(p.RestartDelayMs) }

// PortRange is an inclusive port range; a fixed port has From == To.
type PortRange struct {
	From int `json:"from" reload:"next-deploy"`
	To   int `json:"to" reload:"next-deploy"`
}

// String formats the range as "from-to", or the single port.
func (r PortRange) String() string {
	if r.From == r.To {
		return strconv.Itoa(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// Health is the proxied process's health check. Disabled is `health: false`.
type Health struct {
	Disabled     bool   `json:"-" reload:"next-deploy"` // part of health's value, not a key of its own
	Path         string `json:"path" reload:"next-deploy"`
	TimeoutMs    int64  `json:"timeoutMs" reload:"next-deploy"`
	IntervalMs   int64  `json:"intervalMs" reload:"next-deploy"`
	StartDelayMs int64  `json:"startDelayMs" reload:"next-deploy"`
}

// Timeout is TimeoutMs as a Duration.
func (h Health) Timeout() time.Duration { return ms(h.TimeoutMs) }

// Interval is IntervalMs as a Duration.
func (h Health) Interval() time.Duration { return ms(h.IntervalMs) }

// StartDelay is StartDelayMs as a Duration.
func (h Health) StartDelay() time.Duration { return ms(h.StartDelayMs) }

// MarshalJSON writes `false` for a disabled check, as it was configured.
func (h Health) MarshalJSON() ([]byte, error) {
	if h.Disabled {
		return []byte("false"), nil
	}
	type plain Health
	return json.Marshal(plain(h))
}

// Lifecycle holds the stop hooks.
type Lifecycle struct {
	QuietCommand   string `json:"quietCommand,omitempty" reload:"next-deploy"`
	DrainCommand   string `json:"drainCommand,omitempty" reload:"next-deploy"`
	DrainTimeoutMs int64  `json:"drainTimeoutMs" reload:"next-deploy"`
	StopCommand    string `json:"stopCommand,omitempty" reload:"next-deploy"`
}

// DrainTimeout is DrainTimeoutMs as a Duration; 0 skips the drain step.
func (l Lifecycle) DrainTimeout() time.Duration { return ms(l.DrainTimeoutMs) }

// Restart is the automatic restart policy. MaxRestarts nil means unlimited.
type Restart struct {
	MaxRestarts   *int    `json:"maxRestarts,omitempty" reload:"next-deploy"`
	WindowMs      int64   `json:"windowMs" reload:"next-deploy"`
	BackoffFactor float64 `json:"backoffFactor" reload:"next-deploy"`
	MaxDelayMs    int64   `json:"maxDelayMs" reload:"next-deploy"`
}

// Window is WindowMs as a Duration; 0 counts over the whole lifetime.
func (r Restart) Window() time.Duration { return ms(r.WindowMs) }

// MaxDelay is MaxDelayMs as a Duration; 0 means no cap.
func (r Restart) MaxDelay() time.Duration { return ms(r.MaxDelayMs) }

// Memory is the RSS supervision policy.
type Memory struct {
	LimitBytes      int64 `json:"limitBytes" reload:"next-deploy"`
	WarnBytes       int64 `json:"warnBytes" reload:"next-deploy"`
	CheckIntervalMs int64 `json:"checkIntervalMs" reload:"next-deploy"`
	// MaxBytes (extension, default 0 = none) is a hard backstop above
	// limitBytes that the kernel enforces (MemoryMax=) under the systemd
	// runtime; the exec runtime ignores it.
	MaxBytes int64 `json:"maxBytes,omitempty" reload:"next-deploy"`
}

// CheckInterval is CheckIntervalMs as a Duration.
func (m Memory) CheckInterval() time.Duration { return ms(m.CheckIntervalMs) }

// FileMode is control.mode. It marshals as the octal string ("660") so the
// normalised JSON reads like the configuration people write.
type FileMode uint32

// MarshalJSON writes the mode as an octal string.
func (m FileMode) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatUint(uint64(m), 8))
}

// IDOrName is control.owner/group: a numeric id or a user/group name.
type IDOrName struct {
	ID   int    // valid when Name == ""
	Name string // resolved through /etc/passwd or /etc/group at bind time
}

// MarshalJSON writes the id as a number and a name as a string.
func (v IDOrName) MarshalJSON() ([]byte, error) {
	if v.Name != "" {
		return json.Marshal(v.Name)
	}
	return json.Marshal(v.ID)
}

// String is the id or the name.
func (v IDOrName) String() string {
	if v.Name != "" {
		return v.Name
	}
	return strconv.Itoa(v.ID)
}

// ms converts a millisecond field to a Duration for the methods that give
// every ...Ms field as a time.Duration (Proxy.DrainTimeout,
// Process.GracefulStop, ...). Load bounds every ...Ms value to ten years, so
// the product cannot overflow.
func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// Proxied returns the proxied process. A validated Config has exactly one.
func (c *Config) Proxied() *Process {
	for i := range c.Processes {
		if c.Processes[i].Policy == Proxied {
			return &c.Processes[i]
		}
	}
	return nil
}

// ProcessByID returns the process with the given base id, or nil.
func (c *Config) ProcessByID(id string) *Process {
	for i := range c.Processes {
		if c.Processes[i].ID == id {
			return &c.Processes[i]
		}
	}
	return nil
}

// ProxyAddr is host:port of the stable listener.
func (c *Config) ProxyAddr() string {
	return joinHostPort(c.Proxy.Host, c.Proxy.Port)
}

// IsHandoff reports whether p is a service with deployStrategy: "handoff",
// which runs once per release instead of once per daemon.
func (p *Process) IsHandoff() bool { return p.Policy == Service && p.DeployStrategy == Handoff }

// HealthEnabled reports whether the process is health-checked before traffic switches.
func (p *Process) HealthEnabled() bool {
	return p.Policy == Proxied && p.Health != nil && !p.Health.Disabled
}

// InstanceID is the id of replica i: the base id for a single instance,
// "<id>#<i>" in a pool.
func (p *Process) InstanceID(i int) string {
	if p.Replicas <= 1 {
		return p.ID
	}
	return p.ID + "#" + strconv.Itoa(i)
}
