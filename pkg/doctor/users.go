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
