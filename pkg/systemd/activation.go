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
)

// Activated are the listeners systemd passed in; either may be nil.
type Activated struct {
	Proxy   net.Listener
	Control net.Listener
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
	named, err := activation.ListenersWithNames()
	// Managed processes must never see our LISTEN_* variables.
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		_ = os.Unsetenv(k) // cannot fail for these names
	}
	if err != nil {
		return out, fmt.Errorf("socket activation: %w", err)
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
		default:
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return out, fmt.Errorf("socket activation: unexpected socket name(s) %s; name them with FileDescriptorName=%s or FileDescriptorName=%s",
			strings.Join(unknown, ", "), ProxySocketName, ControlSocketName)
	}
	return out, nil
}
