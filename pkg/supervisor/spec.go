package supervisor

import (
	"fmt"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// releaseVars are the deploy-wide template values; per-process values are
// filled by instanceSpec.
type releaseVars struct {
	ID, Path, Revision string
	Ports              map[string]int // every allocated port by base process id
}

// instanceSpec renders one instance of p for a release and builds its
// process.Spec: environment, stop behaviour, restart and memory policies,
// and the fields every event of the process carries.
func (s *Supervisor) instanceSpec(cfg *config.Config, p *config.Process, rv releaseVars, replica int) (process.Spec, error) {
	// The process adds the instance id as "id" and "processId" (the spec's key).
	fields := map[string]any{events.KeyReleaseID: rv.ID, events.KeyPolicy: string(p.Policy), events.KeyBaseID: p.ID}
	r, err := p.Render(s.templateVars(cfg, p, rv, replica))
	if err != nil {
		return process.Spec{}, err
	}
	cred, err := credential(cfg.RunAs(p))
	if err != nil {
		return process.Spec{}, fmt.Errorf("process %s: %w", p.ID, err)
	}
	env := s.processEnv(cfg, p, rv, replica, r.Env)
	stop := stopSettings(p)
	spec := process.Spec{
		ID:           p.InstanceID(replica),
		Command:      r.Command,
		Dir:          r.Cwd,
		Env:          env,
		StopSignal:   stop.StopSignal,
		GracefulStop: stop.GracefulStop,
		Lifecycle:    stop.Lifecycle,
		RestartDelay: p.RestartDelay(),
		Restart: process.RestartPolicy{
			MaxRestarts:   -1,
			Window:        p.Restart.Window(),
			BackoffFactor: p.Restart.BackoffFactor,
			MaxDelay:      p.Restart.MaxDelay(),
		},
		OutputLines: p.OutputLines,
		Fields:      fields,
		Credential:  cred,
		Unit:        cfg.UnitSettingsFor(p),
	}
	if p.Restart.MaxRestarts != nil {
		spec.Restart.MaxRestarts = *p.Restart.MaxRestarts
	}
	if m := p.Memory; m != nil {
		spec.Memory = &process.MemoryPolicy{LimitBytes: uint64(m.LimitBytes), WarnBytes: uint64(m.WarnBytes),
			CheckInterval: m.CheckInterval(), MaxBytes: uint64(m.MaxBytes)}
	}
	return spec, nil
}

// templateVars are the values p's templates are rendered with, for
// instance replica of release rv.
func (s *Supervisor) templateVars(cfg *config.Config, p *config.Process, rv releaseVars, replica int) config.Vars {
	return config.Vars{
		ReleasePath: rv.Path, ReleaseID: rv.ID, Revision: rv.Revision, Application: cfg.Application,
		ProcessID: p.ID, ReplicaIndex: replica, ReplicaCount: p.Replicas, Port: rv.Ports[p.ID], Ports: rv.Ports,
		ProxyHost: cfg.Proxy.Host, ProxyPort: cfg.Proxy.Port, UpstreamHost: cfg.Proxy.UpstreamHost, Env: s.env,
	}
}

// processEnv is the daemon's environment, then the injected ROLLBRIDGE_*
// variables, then the process's own env (which may override both).
func (s *Supervisor) processEnv(cfg *config.Config, p *config.Process, rv releaseVars, replica int, own map[string]string) []string {
	m := make(map[string]string, len(s.env)+16+len(own))
	for k, v := range s.env {
		m[k] = v
	}
	revision := rv.Revision
	if revision == "" {
		revision = rv.ID
	}
	m["ROLLBRIDGE_APPLICATION"] = cfg.Application
	m["ROLLBRIDGE_PROCESS_ID"] = p.ID
	m["ROLLBRIDGE_REPLICA_INDEX"] = strconv.Itoa(replica)
	m["ROLLBRIDGE_REPLICA_COUNT"] = strconv.Itoa(max(p.Replicas, 1))
	m["ROLLBRIDGE_RELEASE_ID"] = rv.ID
	m["ROLLBRIDGE_RELEASE_PATH"] = rv.Path
	m["ROLLBRIDGE_REVISION"] = revision
	// Never pass on what belongs to the daemon: its own port variable, and
	// systemd's notification and watchdog sockets (an app that notifies
	// would only make systemd log "reception only permitted for main PID").
	for _, k := range []string{"ROLLBRIDGE_PORT", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		delete(m, k)
	}
	if port, ok := rv.Ports[p.ID]; ok {
		m["ROLLBRIDGE_PORT"] = strconv.Itoa(port)
	}
	for id, port := range rv.Ports {
		m["ROLLBRIDGE_"+envName(id)+"_PORT"] = strconv.Itoa(port)
	}
	for k, v := range own {
		m[k] = v
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// envName is the <ID> of ROLLBRIDGE_<ID>_PORT, by the Node original's rule:
// every run of characters other than ASCII letters and digits becomes one
// "_", then letters are upper-cased (background--jobs.main ->
// BACKGROUND_JOBS_MAIN).
func envName(id string) string {
	var b strings.Builder
	inRun := false
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case inRun:
			continue
		default:
			b.WriteByte('_')
			inRun = true
			continue
		}
		inRun = false
	}
	return b.String()
}

// checkReleasePath says which path is missing instead of letting the shell
// fail with a confusing ENOENT (a weakness of the Node original).
func checkReleasePath(path string) error {
	st, err := os.Stat(path)
	switch {
	case err != nil && os.IsNotExist(err):
		return fmt.Errorf("release path %s does not exist; pass the prepared release directory with --release-path", path)
	case err != nil:
		return fmt.Errorf("release path %s: %w", path, err)
	case !st.IsDir():
		return fmt.Errorf("release path %s is not a directory", path)
	}
	return nil
}

// credential resolves who a process runs as (config.RunAs) on this host:
// nil when neither user nor group is set (the daemon's own). A user or
// group the host does not know is an error naming it, so the deploy fails
// before anything starts.
func credential(userName, groupName string) (*process.Credential, error) {
	if userName == "" && groupName == "" {
		return nil, nil
	}
	c := &process.Credential{User: userName, Group: groupName}
	var u *user.User
	var err error
	if userName == "" {
		u, err = user.LookupId(strconv.Itoa(os.Geteuid()))
		c.User = "(the daemon's)"
	} else if _, numErr := strconv.ParseUint(userName, 10, 32); numErr == nil {
		u, err = user.LookupId(userName)
	} else {
		u, err = user.Lookup(userName)
	}
	if err != nil {
		return nil, fmt.Errorf("user %q: %w (set user to an existing user, or leave it unset to run as the daemon's user)", userName, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: uid %q is not a number", userName, u.Uid)
	}
	gid := u.Gid
	if groupName != "" {
		var g *user.Group
		if _, numErr := strconv.ParseUint(groupName, 10, 32); numErr == nil {
			g, err = user.LookupGroupId(groupName)
		} else {
			g, err = user.LookupGroup(groupName)
		}
		if err != nil {
			return nil, fmt.Errorf("group %q: %w (set group to an existing group, or leave it unset for the user's own)", groupName, err)
		}
		gid = g.Gid
	} else {
		c.Group = "(the user's)"
	}
	g, err := strconv.ParseUint(gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("group of user %q: gid %q is not a number", userName, gid)
	}
	c.UID, c.GID = uint32(uid), uint32(g)
	return c, nil
}
