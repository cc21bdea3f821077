package systemd

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	units "github.com/rollbridge/rollbridge-go/packaging/systemd"
	"github.com/rollbridge/rollbridge-go/pkg/config"
)

// Installed lists the files Install wrote, by absolute path.
type Installed struct {
	Templates []string // template units (and the tmpfiles snippet) systemd did not know yet
	DropIns   []string // the per-application drop-ins, always rewritten
}

// Install puts an application's units in place under dir (normally
// /etc/systemd/system): the template units from packaging/systemd unless
// systemd already has them there or in the distribution's unit
// directories, then the drop-ins DropIns derives from cfg. Each file is
// written to a temporary name and renamed. It does not ask systemd to
// reload; see Reload.
func Install(cfg *config.Config, dir, rollbridged string) (Installed, error) {
	return install(cfg, dir, rollbridged, "/")
}

// install is Install with the distribution's directories under root
// ("/" but in tests).
func install(cfg *config.Config, dir, rollbridged, root string) (Installed, error) {
	var out Installed
	files, err := DropIns(cfg, rollbridged)
	if err != nil {
		return out, err
	}
	templates, err := fs.ReadDir(units.Files, ".")
	if err != nil {
		return out, fmt.Errorf("read the embedded template units: %w", err)
	}
	for _, t := range templates {
		name := t.Name()
		target := filepath.Join(dir, name)
		if name == "rollbridge.tmpfiles.conf" && dir == "/etc/systemd/system" {
			target = "/etc/tmpfiles.d/rollbridge.conf"
		}
		if knownUnit(root, dir, name) || exists(target) {
			continue
		}
		data, _ := units.Files.ReadFile(name) // embedded and listed above: cannot fail
		if err := writeFile(target, data); err != nil {
			return out, err
		}
		out.Templates = append(out.Templates, target)
	}
	for _, f := range files {
		target := filepath.Join(dir, f.Path)
		if err := writeFile(target, []byte(f.Content)); err != nil {
			return out, err
		}
		out.DropIns = append(out.DropIns, target)
	}
	return out, nil
}

// Reload asks systemd to re-read its units (systemctl daemon-reload).
func Reload(ctx context.Context) error {
	m, err := Connect(ctx)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Reload(ctx)
}

// knownUnit reports whether a template unit is already installed where
// systemd looks: the target directory or where a distribution package
// (the .deb: packaging/deb) puts it under root. The tmpfiles snippet is
// looked for under its packaged name, so that a copy in /etc/tmpfiles.d
// never shadows the package's.
func knownUnit(root, dir, name string) bool {
	places := []string{filepath.Join(dir, name),
		filepath.Join(root, "lib/systemd/system", name), filepath.Join(root, "usr/lib/systemd/system", name)}
	if name == "rollbridge.tmpfiles.conf" {
		places = append(places, filepath.Join(root, "usr/lib/tmpfiles.d/rollbridge.conf"),
			filepath.Join(root, "lib/tmpfiles.d/rollbridge.conf"))
	}
	for _, p := range places {
		if exists(p) {
			return true
		}
	}
	return false
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
