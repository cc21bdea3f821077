package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rollbridge/rollbridge-go/pkg/config"
)

// release renders every template against a prepared release, with the low
// end of each port range, replica 0 and env.
func release(cfg *config.Config, r Release, env map[string]string) []Check {
	abs, _ := filepath.Abs(r.Path) // Abs fails only without a working directory; the stat below then says so
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return []Check{fail("release path", "%s does not exist or is not a directory", abs)}
	}
	checks := []Check{pass("release path", "%s exists", abs)}
	id := r.ID
	if id == "" {
		id = r.Revision
	}
	if id == "" {
		id = filepath.Base(abs)
	}
	ports := map[string]int{}
	for _, p := range cfg.Processes {
		if p.Port != nil {
			ports[p.ID] = p.Port.From
		}
	}
	var problems, missing []string
	for _, p := range cfg.Processes {
		rendered, err := p.Render(config.Vars{ReleasePath: abs, ReleaseID: id, Revision: r.Revision, Application: cfg.Application,
			ProcessID: p.ID, ReplicaCount: p.Replicas, Port: ports[p.ID], Ports: ports,
			ProxyHost: cfg.Proxy.Host, ProxyPort: cfg.Proxy.Port, UpstreamHost: cfg.Proxy.UpstreamHost, Env: env})
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if st, err := os.Stat(rendered.Cwd); err != nil || !st.IsDir() {
			missing = append(missing, fmt.Sprintf("%s: %s", p.ID, rendered.Cwd))
		}
	}
	if len(problems) > 0 {
		checks = append(checks, fail("process templates", "%s", strings.Join(problems, "; ")))
	} else {
		checks = append(checks, pass("process templates", "every command, cwd and env template of %d processes renders", len(cfg.Processes)))
	}
	if len(missing) > 0 {
		checks = append(checks, fail("process working directories", "missing: %s", strings.Join(missing, ", ")))
	} else if len(problems) == 0 {
		checks = append(checks, pass("process working directories", "every rendered cwd exists"))
	}
	return checks
}
