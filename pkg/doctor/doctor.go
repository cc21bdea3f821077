// Package doctor runs rollbridge's pre-flight checks: the config, the
// sockets and directories a daemon needs, leftovers of a crashed daemon,
// systemd's units for the application, and a prepared release's templates.
// Every check is a value (Check); rollbridgectl doctor only renders them.
package doctor

import (
	"context"
	"fmt"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/systemd"
)

// Status is a check's outcome.
type Status int

// The outcomes. Warn is a finding worth reading that does not stop a
// daemon from starting or a deploy from working; only Fail does.
const (
	OK Status = iota
	Warn
	Fail
)

// String returns "ok", "warn" or "fail".
func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Check is the outcome of one check.
type Check struct {
	Name    string // what was checked: "config", "proxy port", ...
	Status  Status
	Message string // what was found
	Fix     string // what to do about it; "" when there is nothing to do
}

// Detail is the message followed by the fix, on one line.
func (c Check) Detail() string {
	if c.Fix == "" {
		return c.Message
	}
	return c.Message + "; " + c.Fix
}

// Release names a prepared release to pre-flight.
type Release struct {
	Path     string
	ID       string // default: Revision, else the directory's name
	Revision string
}

// Options say what to check.
type Options struct {
	// Config is the config to check, or nil when it did not load; then
	// ConfigErr says why (in words for people) and it is the only check.
	Config    *config.Config
	ConfigErr error
	// Env is the environment templates render with ({{env.NAME}}).
	Env map[string]string
	// Release, when set, is pre-flighted too.
	Release *Release
	// DaemonPath is the rollbridged the systemd drop-ins should start.
	DaemonPath string
}

// Run runs the checks in a fixed order: the config, the environment, the
// release, then (on a machine booted with systemd) the units. It never
// fails as a whole: every problem is a failing Check.
func Run(ctx context.Context, o Options) []Check {
	if o.Config == nil {
		return []Check{{Name: "config", Status: Fail, Message: o.ConfigErr.Error()}}
	}
	cfg := o.Config
	n := len(cfg.Processes)
	checks := []Check{pass("config", "valid: %d %s, proxy on %s", n, plural(n, "process", "processes"), cfg.ProxyAddr())}
	// Under systemd the sockets belong to socket units: a held port or a
	// running daemon is then the normal state, not a conflict.
	var unitChecks []Check
	managed := false
	if systemd.Booted() {
		unitChecks, managed = units(ctx, cfg, o.DaemonPath)
	}
	checks = append(checks, environment(ctx, cfg, managed)...)
	checks = append(checks, processUsers(cfg, managed))
	if c, ok := unitSettings(cfg, managed); ok {
		checks = append(checks, c)
	}
	if o.Release != nil {
		checks = append(checks, release(cfg, *o.Release, o.Env)...)
	}
	return append(checks, unitChecks...)
}

func pass(name, format string, args ...any) Check {
	return Check{Name: name, Status: OK, Message: fmt.Sprintf(format, args...)}
}

func fail(name, format string, args ...any) Check {
	return Check{Name: name, Status: Fail, Message: fmt.Sprintf(format, args...)}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
