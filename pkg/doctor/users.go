package doctor

import (
	"fmt"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"

	"github.com/rollbridge/rollbridge-go/pkg/config"
)

// processUsers checks who the processes would run as (config.RunAs): a
// user or group the host does not know fails (the deploy would), and root
// is a warning. Unset, a process runs as the daemon's user: root under the
// packaged unit (managed), else whoever starts the daemon, taken to be
// the user running doctor.
func processUsers(cfg *config.Config, managed bool) Check {
	const name = "process users"
	daemonUID := os.Geteuid()
	if managed {
		daemonUID = 0
	}
	var asRoot, problems []string
	for i := range cfg.Processes {
		p := &cfg.Processes[i]
		userName, groupName := cfg.RunAs(p)
		uid := daemonUID
		if userName != "" {
			u, err := lookupUser(userName)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: user %q: %v", p.ID, userName, err))
				continue
			}
			uid, _ = strconv.Atoi(u.Uid)
		}
		if groupName != "" {
			if _, err := lookupGroup(groupName); err != nil {
				problems = append(problems, fmt.Sprintf("%s: group %q: %v", p.ID, groupName, err))
				continue
			}
		}
		if uid == 0 {
			asRoot = append(asRoot, p.ID)
		}
	}
	sort.Strings(asRoot)
	switch {
	case len(problems) > 0:
		c := fail(name, "%s", strings.Join(problems, "; "))
		c.Fix = "create the user or group, or name an existing one in user/group (top level or per process); a deploy fails until then"
		return c
	case len(asRoot) > 0:
		c := fail(name, "%s would run as root", strings.Join(asRoot, ", "))
		c.Status = Warn
		c.Fix = "set user (top level or per process) to an unprivileged user, e.g. user: 'app'"
		return c
	}
	return pass(name, "no process runs as root")
}

// unitSettings checks that the processes' systemd unit settings
// (sandboxing, limits) will be applied: only the systemd runtime can, and
// runtime 'auto' picks it only when the daemon runs as a systemd service
// (managed). ok is false when no process has any: then there is nothing
// to report. (runtime 'exec' with unit settings does not validate.)
func unitSettings(cfg *config.Config, managed bool) (c Check, ok bool) {
	const name = "unit settings"
	var ids []string
	for i := range cfg.Processes {
		if p := &cfg.Processes[i]; len(cfg.UnitSettingsFor(p)) > 0 {
			ids = append(ids, p.ID)
		}
	}
	if len(ids) == 0 {
		return Check{}, false
	}
	list := strings.Join(ids, ", ")
	if cfg.Runtime == config.RuntimeSystemd || managed {
		return pass(name, "the systemd units of %s get their systemd settings", list), true
	}
	c = fail(name, "the systemd settings of %s apply only when the daemon runs as a systemd service (runtime 'auto'); run outside one, it starts processes as its children and ignores them", list)
	c.Status = Warn
	c.Fix = "run the daemon as rollbridge@" + cfg.Application + " (rollbridgectl systemd units --install), or set runtime: 'systemd' to refuse to start without systemd"
	return c, true
}

func lookupUser(s string) (*user.User, error) {
	if _, err := strconv.ParseUint(s, 10, 32); err == nil {
		return user.LookupId(s)
	}
	return user.Lookup(s)
}

func lookupGroup(s string) (*user.Group, error) {
	if _, err := strconv.ParseUint(s, 10, 32); err == nil {
		return user.LookupGroupId(s)
	}
	return user.LookupGroup(s)
}
