package systemd

import (
	"fmt"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// unitSettingProperties are spec's unit settings (the config's `systemd`
// fields, see config.UnitSettings) as properties of its transient unit.
// The config package knows each setting's D-Bus name and value type; here
// they only become variants. An error means a setting the config would
// have refused (a hand-built spec): the start fails rather than run the
// process without the sandbox it asked for.
func unitSettingProperties(spec process.Spec) ([]sdbus.Property, error) {
	if len(spec.Unit) == 0 {
		return nil, nil
	}
	list, err := config.UnitProperties(spec.Unit)
	if err != nil {
		return nil, fmt.Errorf("process %s: %w", spec.ID, err)
	}
	out := make([]sdbus.Property, len(list))
	for i, p := range list {
		out[i] = sdbus.Property{Name: p.Name, Value: dbus.MakeVariant(p.Value)}
	}
	return out, nil
}
