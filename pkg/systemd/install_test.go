package systemd

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rollbridge/rollbridge-go/pkg/config"
)

// TestInstallLeavesPackagedTemplatesAlone: on a host where the .deb put the
// template units in /lib/systemd/system and the tmpfiles snippet in
// /usr/lib/tmpfiles.d, --install writes the drop-ins only; a copy of the
// snippet under /etc/tmpfiles.d would shadow the package's file.
func TestInstallLeavesPackagedTemplatesAlone(t *testing.T) {
	root, dir := t.TempDir(), t.TempDir()
	cfg, err := config.Decode([]byte(`{"application":"shop","proxy":{"host":"127.0.0.1","port":8182},`+
		`"processes":[{"id":"web","policy":"proxied","command":"exec ./server","port":18182}]}`),
		filepath.Join(dir, "shop.jsonnet"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"lib/systemd/system/rollbridge@.service", "lib/systemd/system/rollbridge-units@.service",
		"lib/systemd/system/rollbridge-proxy@.socket", "lib/systemd/system/rollbridge-control@.socket",
		"lib/systemd/system/rollbridge-metrics@.socket",
		"usr/lib/tmpfiles.d/rollbridge.conf"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := install(cfg, dir, "/usr/bin/rollbridged", root)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Templates) != 0 {
		t.Errorf("installed templates %v, want none (the package has them)", got.Templates)
	}
	want := filepath.Join(dir, "rollbridge@shop.service.d", "50-rollbridge.conf")
	if !slices.Contains(got.DropIns, want) {
		t.Errorf("drop-ins %v, want %s among them", got.DropIns, want)
	}

	// Without the package every template is installed, the snippet too.
	got, err = install(cfg, t.TempDir(), "/usr/bin/rollbridged", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Templates) != 6 {
		t.Errorf("installed templates %v, want all 6", got.Templates)
	}
}
