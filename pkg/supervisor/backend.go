package supervisor

import "github.com/rollbridge/rollbridge-go/pkg/proxy"

// Backend returns the proxy backend of release id's current run — the one
// its connections count on (status, drain) and CloseConnections ends — or
// nil when no such release serves or drains: it is unknown, failed,
// stopping or stopped. The daemon resumes the connections a previous
// daemon parked on it.
func (s *Supervisor) Backend(id string) *proxy.Backend { return s.tab.backendOf(id) }

func (t *table) backendOf(id string) *proxy.Backend {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.findLocked(id)
	if r == nil || r.run.stopping {
		return nil
	}
	return r.run.backend
}
