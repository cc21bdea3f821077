package systemd

import (
	"context"
	"fmt"
	"os"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// Booted reports whether systemd is this machine's service manager.
func Booted() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}

// Manager is a D-Bus connection to the system manager. Close it when done.
type Manager struct {
	conn *sdbus.Conn
}

// Connect opens a connection to systemd over the system bus (or its private
// socket when run as root).
func Connect(ctx context.Context) (*Manager, error) {
	c, err := sdbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd over D-Bus: %w", err)
	}
	return &Manager{conn: c}, nil
}

// Close ends the connection.
func (m *Manager) Close() { m.conn.Close() }

// UnitState is what systemctl show reports for a unit.
type UnitState struct {
	Name         string
	LoadState    string // loaded, not-found, masked, ...
	ActiveState  string // active, inactive, failed, activating, ...
	SubState     string // running, listening, dead, ...
	FragmentPath string
	DropInPaths  []string
}

// Exists reports whether the unit file is known to systemd.
func (u UnitState) Exists() bool { return u.LoadState != "" && u.LoadState != "not-found" }

// Unit returns the state of a unit (templates instances included).
func (m *Manager) Unit(ctx context.Context, name string) (UnitState, error) {
	props, err := m.conn.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return UnitState{Name: name}, fmt.Errorf("unit %s: %w", name, err)
	}
	str := func(k string) string { s, _ := props[k].(string); return s }
	st := UnitState{Name: name, LoadState: str("LoadState"), ActiveState: str("ActiveState"), SubState: str("SubState"), FragmentPath: str("FragmentPath")}
	if paths, ok := props["DropInPaths"].([]string); ok {
		st.DropInPaths = paths
	}
	return st, nil
}

// Start starts a unit and waits for the job to finish.
func (m *Manager) Start(ctx context.Context, name string) error {
	ch := make(chan string, 1)
	if _, err := m.conn.StartUnitContext(ctx, name, "replace", ch); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("start %s: job %s (see journalctl -u %s)", name, res, strings.TrimSuffix(name, ".service"))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("start %s: %w", name, ctx.Err())
	}
}

// Reload makes systemd re-read unit files (systemctl daemon-reload).
func (m *Manager) Reload(ctx context.Context) error {
	if err := m.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("systemd daemon-reload: %w", err)
	}
	return nil
}
