package daemon

import (
	"os"

	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// Handover makes upgraded connections (WebSockets) and idle keep-alive
// client connections outlive the daemon through systemd's fd store
// (docs/systemd.md, "What survives what"): the proxy parks each upgraded
// one in Store once its upgrade completes, a daemon restart leaves them
// there (Park) and parks each client connection at its request boundary
// (proxy.ClientConns), and the next daemon resumes what it got back
// (Parked): upgraded connections on their release, client connections
// by serving their next request. A stop removes everything.
type Handover struct {
	// Store is systemd's fd store; nil means no hand-over at all.
	Store HandoverStore
	// Enabled parks new connections in Store; false (the unit has no
	// FileDescriptorStoreMax=, or not the systemd runtime) copies them
	// in-process, and what came back in Parked is only closed.
	Enabled bool
	// Parked are the descriptors the store gave back at this start (their
	// names in f.Name()); Run takes them over.
	Parked []*os.File
}

// HandoverStore is an fd store that can also empty itself at a stop
// (pkg/systemd.FDStore).
type HandoverStore interface {
	proxy.FDStore
	RemoveAll()
}

// proxyStore is what the proxy parks connections in: nil unless enabled.
func (h *Handover) proxyStore() proxy.FDStore {
	if h == nil || h.Store == nil || !h.Enabled {
		return nil
	}
	return h.Store
}

// resumeClients takes back the idle keep-alive client connections a
// previous daemon parked (proxy.ClientConns.Resume): the proxy serves
// them first, like new connections, before anything of them is read.
// They are served whether or not this daemon parks connections itself.
func (d *daemon) resumeClients(h *Handover) {
	if h == nil || len(h.Parked) == 0 {
		return
	}
	var store proxy.FDStore
	if h.Store != nil {
		store = h.Store
	}
	d.clientsResumed, h.Parked = d.clients.Resume(store, h.Parked)
}

// resume takes over the connections a previous daemon parked: each one
// whose release serves or drains again is copied on its backend and
// counted there; the others (release gone, a descriptor missing, hand-over
// off) are closed and removed from the store. It runs once the state is
// restored or adopted, before the held requests go on.
func (d *daemon) resume(h *Handover) {
	if h == nil || len(h.Parked)+d.clientsResumed == 0 {
		return
	}
	conns, broken, rest := proxy.ParkedConns(h.Parked)
	h.Parked = nil
	for _, f := range rest {
		_ = f.Close() // not ours to resume (activation only passes ws.* here)
	}
	resumed, closed := map[string]int{}, len(broken)
	for _, c := range broken {
		c.Close(h.Store)
	}
	for _, c := range conns {
		var b *proxy.Backend
		if h.Enabled {
			b = d.sup.Backend(c.ReleaseID)
		}
		if b == nil {
			c.Close(h.Store)
			closed++
			continue
		}
		d.proxy.Resume(b, c)
		resumed[c.ReleaseID]++
	}
	d.log.Emit(events.ConnectionsResumed, map[string]any{"resumed": resumed, "closed": closed, "idle": d.clientsResumed})
}

// park leaves the spliced connections in the store for the next daemon
// (a restart).
func (d *daemon) park() { d.proxy.Park() }

// unpark ends every stored connection at a stop: the copies stop, and the
// store closes its descriptors, the last ones, which closes the sockets.
func (d *daemon) unpark(h *Handover) {
	d.proxy.Park()
	if h != nil && h.Store != nil {
		h.Store.RemoveAll()
	}
}
