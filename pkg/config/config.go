package config

import (
	"encoding/json"
	"fmt"
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

// Config is a loaded, normalised configuration. Its JSON form (encoding/json)
// is what `rollbridgectl validate --json` prints, and it loads back to an
// equal Config.
//
// The struct definitions below are the schema (see schema.go): `json` names
// the field in the config file.
type Config struct {
	Application      string           `json:"application"`
	Control          Control          `json:"control"`
	Proxy            Proxy            `json:"proxy"`
	Processes        []Process        `json:"processes"`
	ReleaseRetention ReleaseRetention `json:"releaseRetention"`
	StatePath        string           `json:"statePath,omitempty"`
	// RestoreOnStart (extension, default true): when the state file names an
	// active release and none of its processes survived, redeploy it at start.
	RestoreOnStart bool            `json:"restoreOnStart"`
	LegacyTakeover *LegacyTakeover `json:"legacyTakeover,omitempty"`

	// Path is the absolute path of the file this config was loaded from.
	Path string `json:"-"`
}

// Control configures the Unix control socket.
type Control struct {
	Path  string    `json:"path"`
	Mode  *FileMode `json:"mode,omitempty"`
	Owner *IDOrName `json:"owner,omitempty"`
	Group *IDOrName `json:"group,omitempty"`
}

// Proxy configures the stable listener and shared defaults.
type Proxy struct {
	Host               string `json:"host"`
	Port               int    `json:"port"`
	UpstreamHost       string `json:"upstreamHost"`
	HealthPath         string `json:"healthPath"`
	HealthTimeoutMs    int64  `json:"healthTimeoutMs"`
	DrainTimeoutMs     int64  `json:"drainTimeoutMs"`
	ForceStopTimeoutMs int64  `json:"forceStopTimeoutMs"`
}

// HealthTimeout is HealthTimeoutMs as a Duration.
func (p Proxy) HealthTimeout() time.Duration { return Ms(p.HealthTimeoutMs) }

// DrainTimeout is DrainTimeoutMs as a Duration.
func (p Proxy) DrainTimeout() time.Duration { return Ms(p.DrainTimeoutMs) }

// ForceStopTimeout is ForceStopTimeoutMs as a Duration.
func (p Proxy) ForceStopTimeout() time.Duration { return Ms(p.ForceStopTimeoutMs) }

// ReleaseRetention bounds how many stopped releases the daemon remembers.
type ReleaseRetention struct {
	Keep     int   `json:"keep"`
	MaxAgeMs int64 `json:"maxAgeMs"`
}

// MaxAge is MaxAgeMs as a Duration; 0 means no age limit.
func (r ReleaseRetention) MaxAge() time.Duration { return Ms(r.MaxAgeMs) }

// LegacyTakeover describes pre-Rollbridge processes predeploy-cleanup stops.
type LegacyTakeover struct {
	Screens            []string        `json:"screens"`
	Processes          []LegacyProcess `json:"processes"`
	ForceStopTimeoutMs int64           `json:"forceStopTimeoutMs"`
}

// ForceStopTimeout is ForceStopTimeoutMs as a Duration.
func (l LegacyTakeover) ForceStopTimeout() time.Duration { return Ms(l.ForceStopTimeoutMs) }

// LegacyProcess matches processes whose command line contains every Includes string.
type LegacyProcess struct {
	Name     string   `json:"name"`
	Includes []string `json:"includes"`
}

// Process is one entry of processes[].
type Process struct {
	ID               string            `json:"id"`
	Policy           Policy            `json:"policy"`
	Command          string            `json:"command"`
	Cwd              string            `json:"cwd"`
	Env              map[string]string `json:"env"`
	Port             *PortRange        `json:"port,omitempty"`
	Health           *Health           `json:"health,omitempty"`
	StopSignal       string            `json:"stopSignal"`
	NonBlockingDrain bool              `json:"nonBlockingDrain"`
	Lifecycle        *Lifecycle        `json:"lifecycle,omitempty"`
	GracefulStopMs   int64             `json:"gracefulStopMs"`
	RestartDelayMs   int64             `json:"restartDelayMs"`
	Restart          Restart           `json:"restart"`
	Memory           *Memory           `json:"memory,omitempty"`
	Replicas         int               `json:"replicas"`
	OutputLines      int               `json:"outputLines"`
}

// GracefulStop is GracefulStopMs as a Duration.
func (p *Process) GracefulStop() time.Duration { return Ms(p.GracefulStopMs) }

// RestartDelay is RestartDelayMs as a Duration.
func (p *Process) RestartDelay() time.Duration { return Ms(p.RestartDelayMs) }

// PortRange is an inclusive port range; a fixed port has From == To.
type PortRange struct {
	From int `json:"from"`
	To   int `json:"to"`
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
	Disabled     bool   `json:"-"`
	Path         string `json:"path"`
	TimeoutMs    int64  `json:"timeoutMs"`
	IntervalMs   int64  `json:"intervalMs"`
	StartDelayMs int64  `json:"startDelayMs"`
}

// Timeout is TimeoutMs as a Duration.
func (h Health) Timeout() time.Duration { return Ms(h.TimeoutMs) }

// Interval is IntervalMs as a Duration.
func (h Health) Interval() time.Duration { return Ms(h.IntervalMs) }

// StartDelay is StartDelayMs as a Duration.
func (h Health) StartDelay() time.Duration { return Ms(h.StartDelayMs) }

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
	QuietCommand   string `json:"quietCommand,omitempty"`
	DrainCommand   string `json:"drainCommand,omitempty"`
	DrainTimeoutMs int64  `json:"drainTimeoutMs"`
	StopCommand    string `json:"stopCommand,omitempty"`
}

// DrainTimeout is DrainTimeoutMs as a Duration; 0 skips the drain step.
func (l Lifecycle) DrainTimeout() time.Duration { return Ms(l.DrainTimeoutMs) }

// Restart is the automatic restart policy. MaxRestarts nil means unlimited.
type Restart struct {
	MaxRestarts   *int    `json:"maxRestarts,omitempty"`
	WindowMs      int64   `json:"windowMs"`
	BackoffFactor float64 `json:"backoffFactor"`
	MaxDelayMs    int64   `json:"maxDelayMs"`
}

// Window is WindowMs as a Duration; 0 counts over the whole lifetime.
func (r Restart) Window() time.Duration { return Ms(r.WindowMs) }

// MaxDelay is MaxDelayMs as a Duration; 0 means no cap.
func (r Restart) MaxDelay() time.Duration { return Ms(r.MaxDelayMs) }

// Memory is the RSS supervision policy.
type Memory struct {
	LimitBytes      int64 `json:"limitBytes"`
	WarnBytes       int64 `json:"warnBytes"`
	CheckIntervalMs int64 `json:"checkIntervalMs"`
}

// CheckInterval is CheckIntervalMs as a Duration.
func (m Memory) CheckInterval() time.Duration { return Ms(m.CheckIntervalMs) }

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

// Ms converts a millisecond field to a Duration. Each ...Ms field also has a
// method without the suffix (Proxy.DrainTimeout, Process.GracefulStop, ...)
// that does this; callers should prefer those. Load bounds every ...Ms value
// to ten years, so the product cannot overflow.
func Ms(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

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
