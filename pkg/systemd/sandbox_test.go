package systemd

import (
	"context"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// unitSettingCases are a value for every unit setting the config accepts
// and the D-Bus properties it must become, with each one's signature as
// org.freedesktop.systemd1(5) documents it for systemd 252 (Service
// units: the Exec*, Kill* and cgroup properties). Typed from the manual,
// not from the code, so a wrong Go type for a property shows here.
var unitSettingCases = map[string]struct {
	value any
	want  map[string]string // D-Bus property -> signature
}{
	"NoNewPrivileges":         {true, map[string]string{"NoNewPrivileges": "b"}},
	"PrivateTmp":              {true, map[string]string{"PrivateTmp": "b"}},
	"PrivateDevices":          {true, map[string]string{"PrivateDevices": "b"}},
	"PrivateMounts":           {true, map[string]string{"PrivateMounts": "b"}},
	"ProtectKernelTunables":   {true, map[string]string{"ProtectKernelTunables": "b"}},
	"ProtectKernelModules":    {true, map[string]string{"ProtectKernelModules": "b"}},
	"ProtectKernelLogs":       {true, map[string]string{"ProtectKernelLogs": "b"}},
	"ProtectControlGroups":    {true, map[string]string{"ProtectControlGroups": "b"}},
	"ProtectClock":            {true, map[string]string{"ProtectClock": "b"}},
	"ProtectHostname":         {true, map[string]string{"ProtectHostname": "b"}},
	"RestrictRealtime":        {true, map[string]string{"RestrictRealtime": "b"}},
	"RestrictSUIDSGID":        {true, map[string]string{"RestrictSUIDSGID": "b"}},
	"LockPersonality":         {true, map[string]string{"LockPersonality": "b"}},
	"MemoryDenyWriteExecute":  {true, map[string]string{"MemoryDenyWriteExecute": "b"}},
	"RemoveIPC":               {true, map[string]string{"RemoveIPC": "b"}},
	"ProtectSystem":           {"strict", map[string]string{"ProtectSystem": "s"}},
	"ProtectHome":             {"read-only", map[string]string{"ProtectHome": "s"}},
	"ProtectProc":             {"invisible", map[string]string{"ProtectProc": "s"}},
	"ProcSubset":              {"pid", map[string]string{"ProcSubset": "s"}},
	"ReadWritePaths":          {[]string{"-/var/lib/rb-sandbox-test"}, map[string]string{"ReadWritePaths": "as"}},
	"ReadOnlyPaths":           {[]string{"/etc"}, map[string]string{"ReadOnlyPaths": "as"}},
	"InaccessiblePaths":       {[]string{"-/root"}, map[string]string{"InaccessiblePaths": "as"}},
	"CapabilityBoundingSet":   {[]string{"CAP_NET_BIND_SERVICE"}, map[string]string{"CapabilityBoundingSet": "t"}},
	"AmbientCapabilities":     {[]string{}, map[string]string{"AmbientCapabilities": "t"}},
	"RestrictNamespaces":      {true, map[string]string{"RestrictNamespaces": "t"}},
	"SystemCallFilter":        {[]string{"@system-service"}, map[string]string{"SystemCallFilter": "(bas)"}},
	"RestrictAddressFamilies": {[]string{"AF_UNIX", "AF_INET", "AF_INET6"}, map[string]string{"RestrictAddressFamilies": "(bas)"}},
	"SystemCallArchitectures": {[]string{"native"}, map[string]string{"SystemCallArchitectures": "as"}},
	"SystemCallErrorNumber":   {"EPERM", map[string]string{"SystemCallErrorNumber": "i"}},
	"UMask":                   {"0027", map[string]string{"UMask": "u"}},
	"LimitNOFILE":             {int64(4096), map[string]string{"LimitNOFILE": "t", "LimitNOFILESoft": "t"}},
	"LimitNPROC":              {"512:1024", map[string]string{"LimitNPROC": "t", "LimitNPROCSoft": "t"}},
	"LimitCORE":               {int64(0), map[string]string{"LimitCORE": "t", "LimitCORESoft": "t"}},
	"TasksMax":                {int64(64), map[string]string{"TasksMax": "t"}},
	"CPUQuota":                {"50%", map[string]string{"CPUQuotaPerSecUSec": "t"}},
	"CPUWeight":               {int64(50), map[string]string{"CPUWeight": "t"}},
	"IOWeight":                {int64(50), map[string]string{"IOWeight": "t"}},
	"OOMScoreAdjust":          {int64(500), map[string]string{"OOMScoreAdjust": "i"}},
	"Nice":                    {int64(5), map[string]string{"Nice": "i"}},
}

func allUnitSettings() config.UnitSettings {
	s := config.UnitSettings{}
	for name, c := range unitSettingCases {
		s[name] = c.value
	}
	return s
}

// TestUnitSettingSignatures: every setting the config accepts becomes
// D-Bus properties with the names and signatures systemd documents.
func TestUnitSettingSignatures(t *testing.T) {
	names := config.UnitSettingNames()
	for _, name := range names {
		if _, ok := unitSettingCases[name]; !ok {
			t.Errorf("config accepts %s, which unitSettingCases does not check; add it with its documented signature", name)
		}
	}
	for name, c := range unitSettingCases {
		t.Run(name, func(t *testing.T) {
			props, err := unitSettingProperties(process.Spec{ID: "web", Unit: config.UnitSettings{name: c.value}})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, p := range props {
				got[p.Name] = p.Value.Signature().String()
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	if props, err := unitSettingProperties(process.Spec{ID: "web", Unit: map[string]any{"ExecStart": "/bin/sh"}}); err == nil {
		t.Errorf("a refused setting in a hand-built spec became %v, want an error", props)
	}
}

// TestSystemdAppliesUnitSettings starts a unit with every setting at
// once under a real systemd, which refuses a property of the wrong type
// or an unknown one, reads each property back, and checks from inside
// the unit that a few of them really hold: NoNewPrivs, a read-only /usr,
// a /tmp of its own.
func TestSystemdAppliesUnitSettings(t *testing.T) {
	if !systemdWanted() {
		t.Skip("needs a real systemd (RB_SYSTEMD_TESTS=1; the systemd lane runs it)")
	}
	marker := "/tmp/rb-sandbox-marker-" + testApp(t)
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(marker)
	r := newSystemdRunner(t, testApp(t))
	t.Cleanup(r.Close) // after the process's stop, which newProc registers later
	spec := shellSpec(t, "web", `grep NoNewPrivs /proc/self/status; `+
		`if touch /usr/rb-sandbox-probe 2>/dev/null; then echo usr=writable; else echo usr=read-only; fi; `+
		`if [ -e `+marker+` ]; then echo tmp=shared; else echo tmp=private; fi; echo umask=$(umask); `+
		`while :; do sleep 0.05; done`)
	spec.Dir = "/" // the test's temp dir is under /tmp, which PrivateTmp replaces
	spec.Unit = allUnitSettings()
	p, _ := newProc(t, spec, r)
	if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the unit's report", func() bool { return logged(p, "umask=") })
	for _, want := range []string{"NoNewPrivs:\t1", "usr=read-only", "tmp=private", "umask=0027"} {
		if !logged(p, want) {
			t.Errorf("the unit did not report %q: %v", want, p.Logs())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	name := r.unitName(spec, 0)
	got, err := r.conn.GetUnitTypePropertiesContext(ctx, name, "Service")
	if err != nil {
		t.Fatal(err)
	}
	props, err := config.UnitProperties(spec.Unit)
	if err != nil {
		t.Fatal(err)
	}
	var checked []string
	for _, p := range props {
		switch p.Name {
		case "SystemCallFilter", "RestrictAddressFamilies", "SystemCallArchitectures":
			// Read back expanded (sets into calls, "native" into the
			// architecture's name): present is what can be compared.
			if got[p.Name] == nil {
				t.Errorf("%s: not set on the unit", p.Name)
			}
			continue
		}
		if !reflect.DeepEqual(got[p.Name], p.Value) {
			t.Errorf("%s: the unit has %#v, want %#v", p.Name, got[p.Name], p.Value)
		}
		checked = append(checked, p.Name)
	}
	sort.Strings(checked)
	t.Logf("read back: %s", strings.Join(checked, " "))
}
