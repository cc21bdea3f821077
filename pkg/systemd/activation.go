package systemd

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strings"

	"github.com/coreos/go-systemd/v22/activation"
)

// Socket names, as set with FileDescriptorName= in the socket units.
const (
	ProxySocketName   = "proxy"
	ControlSocketName = "control"
	MetricsSocketName = "metrics" // rollbridge-metrics@.socket, when the config has metrics
)

// StoredPrefix starts the names of the descriptors the daemon keeps in the
// fd store for upgraded connections (see proxy.FDStore), and
// StoredClientPrefix those of parked idle keep-alive client connections
// (proxy.ClientConns); they come back beside the listeners.
const (
	StoredPrefix       = "ws."
	StoredClientPrefix = "ka."
)

// Activated are the listeners systemd passed in (either may be nil) and
// the descriptors the fd store gave back (StoredPrefix and
// StoredClientPrefix names; f.Name() is the name), which the caller owns.
type Activated struct {
	Proxy   net.Listener
	Control net.Listener
	Metrics net.Listener // nil unless a socket named MetricsSocketName came
	Stored  []*os.File
}

// ActivatedListeners takes the listeners passed through LISTEN_FDS /
// LISTEN_FDNAMES (meant for this process: LISTEN_PID) and clears those
// variables so managed processes do not inherit them. No activation is not
// an error: both fields are then nil.
func ActivatedListeners() (Activated, error) {
	var out Activated
	if os.Getenv("LISTEN_FDS") == "" {
		return out, nil
	}
	// Files also clears LISTEN_*: managed processes must never see them.
	named := map[string][]net.Listener{}
	for _, f := range activation.Files(true) {
		if strings.HasPrefix(f.Name(), StoredPrefix) || strings.HasPrefix(f.Name(), StoredClientPrefix) {
			out.Stored = append(out.Stored, f)
			continue
		}
		ln, err := net.FileListener(f)
		_ = f.Close() // the listener has a descriptor of its own
		if err != nil {
			ln = nil // reported below, by name
		}
		named[f.Name()] = append(named[f.Name()], ln)
	}
	var unknown []string
	for name, lns := range named {
		for _, ln := range lns {
			if ln == nil {
				return out, fmt.Errorf("socket activation: fd %q is not a stream listening socket", name)
			}
		}
		switch name {
		case ProxySocketName:
			if len(lns) != 1 {
				return out, fmt.Errorf("socket activation: %d sockets named %q; the proxy socket unit must have exactly one ListenStream", len(lns), name)
			}
			out.Proxy = lns[0]
		case ControlSocketName:
			if len(lns) != 1 {
				return out, fmt.Errorf("socket activation: %d sockets named %q; the control socket unit must have exactly one ListenStream", len(lns), name)
			}
			out.Control = lns[0]
		case MetricsSocketName:
			if len(lns) != 1 {
				return out, fmt.Errorf("socket activation: %d sockets named %q; the metrics socket unit must have exactly one ListenStream", len(lns), name)
			}
			out.Metrics = lns[0]
		default:
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return out, fmt.Errorf("socket activation: unexpected socket name(s) %s; name them with FileDescriptorName=%s, %s or %s",
			strings.Join(unknown, ", "), ProxySocketName, ControlSocketName, MetricsSocketName)
	}
	return out, nil
}
