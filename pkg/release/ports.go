package release

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"github.com/rollbridge/rollbridge-go/pkg/config"
)

// PortRequest asks for one port in a range for a process.
type PortRequest struct {
	ProcessID string
	Range     config.PortRange
}

// PortError explains why a range had no free port, with the three counts an
// operator needs to tell "range too small" from "something holds the ports"
// from "not allowed to bind".
type PortError struct {
	ProcessID  string
	Range      config.PortRange
	Host       string
	Reserved   int // taken by an earlier request of the same allocation
	InUse      int // EADDRINUSE
	Unbindable int // any other bind error, e.g. EACCES below 1024
	LastErr    error
}

func (e *PortError) Error() string {
	n := e.Range.To - e.Range.From + 1
	msg := fmt.Sprintf("no available port for process %s in range %d-%d (%d %s on %s): %d reserved by this deploy, %d already in use",
		e.ProcessID, e.Range.From, e.Range.To, n, plural(n, "port", "ports"), e.Host, e.Reserved, e.InUse)
	if e.Unbindable > 0 {
		msg += fmt.Sprintf(", %d could not be bound (%v)", e.Unbindable, e.LastErr)
	}
	return msg + "; widen the port range, free a port, or check bind permissions"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Allocate picks one port per request on host, trying each range in order
// and really binding every candidate, so a port held by anything — an old
// release still draining included — is skipped. Ports in avoid are treated
// as reserved. Requests are served in order; none shares a port.
func Allocate(host string, reqs []PortRequest, avoid map[int]bool) (map[string]int, error) {
	taken := make(map[int]bool, len(avoid)+len(reqs))
	for p := range avoid {
		taken[p] = true
	}
	out := make(map[string]int, len(reqs))
	for _, r := range reqs {
		perr := &PortError{ProcessID: r.ProcessID, Range: r.Range, Host: host}
		found := 0
		for p := r.Range.From; p <= r.Range.To; p++ {
			if taken[p] {
				perr.Reserved++
				continue
			}
			err := probeBind(host, p)
			if err == nil {
				found = p
				break
			}
			if errors.Is(err, syscall.EADDRINUSE) {
				perr.InUse++
			} else {
				perr.Unbindable++
				perr.LastErr = err
			}
		}
		if found == 0 {
			return nil, perr
		}
		taken[found] = true
		out[r.ProcessID] = found
	}
	return out, nil
}

// probeBind binds and closes host:port. The process binds it for real a
// moment later; deploys are serialized, so nothing of ours races for it.
func probeBind(host string, port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}
