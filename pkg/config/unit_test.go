package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// unitConfig is a valid config whose top level and web process carry the
// given systemd objects (JSON text; "" leaves the field out).
func unitConfig(top, web, runtime string) []byte {
	s := `{"proxy":{},` + runtime + `"processes":[{"id":"web","policy":"proxied","command":"x","port":18000` + web + `}]` + top + `}`
	return []byte(s)
}

func decodeUnit(t *testing.T, top, web, runtime string) (*Config, Issues) {
	t.Helper()
	if top != "" {
		top = `,"systemd":` + top
	}
	if web != "" {
		web = `,"systemd":` + web
	}
	if runtime != "" {
		runtime = `"runtime":"` + runtime + `",`
	}
	cfg, err := Decode(unitConfig(top, web, runtime), "/srv/app/rollbridge.jsonnet")
	var issues Issues
	if err != nil && !errors.As(err, &issues) {
		t.Fatalf("Decode: %v", err)
	}
	return cfg, issues
}

func TestUnitSettingsGood(t *testing.T) {
	top := `{"NoNewPrivileges":true,"ProtectSystem":"strict","ProtectHome":true,"PrivateTmp":true,"ReadWritePaths":["/var/lib/shop","-/srv/shop/shared"],"LimitNOFILE":65536,"CPUQuota":"50%"}`
	web := `{"ProtectSystem":"full","LimitNOFILE":"1024:4096","CapabilityBoundingSet":["CAP_NET_BIND_SERVICE"],"UMask":"0027"}`
	cfg, issues := decodeUnit(t, top, web, "")
	if len(issues) > 0 {
		t.Fatalf("issues: %v", issues)
	}
	got := cfg.UnitSettingsFor(&cfg.Processes[0])
	want := UnitSettings{
		"NoNewPrivileges": true, "ProtectSystem": "full", "ProtectHome": true, "PrivateTmp": true,
		"ReadWritePaths": []string{"/var/lib/shop", "-/srv/shop/shared"}, "LimitNOFILE": "1024:4096",
		"CPUQuota": "50%", "CapabilityBoundingSet": []string{"CAP_NET_BIND_SERVICE"}, "UMask": "0027",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged settings:\n got %v\nwant %v", got, want)
	}
	// The process's settings win one by one; the config's stay untouched.
	if cfg.Systemd["ProtectSystem"] != "strict" || cfg.Systemd["LimitNOFILE"] != int64(65536) {
		t.Errorf("the merge changed the config's own settings: %v", cfg.Systemd)
	}
	if (&Config{}).UnitSettingsFor(&Process{}) != nil {
		t.Error("no settings anywhere should be nil")
	}
}

// TestUnitProperties pins each setting's D-Bus name and Go value (whose
// type is the property's D-Bus signature, see pkg/systemd's signature
// test) for the values a unit file would spell the same way.
func TestUnitProperties(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want []UnitProperty
	}{
		{"NoNewPrivileges", true, []UnitProperty{{"NoNewPrivileges", true}}},
		{"PrivateTmp", false, []UnitProperty{{"PrivateTmp", false}}},
		{"ProtectSystem", true, []UnitProperty{{"ProtectSystem", "yes"}}},
		{"ProtectSystem", "strict", []UnitProperty{{"ProtectSystem", "strict"}}},
		{"ProtectHome", false, []UnitProperty{{"ProtectHome", "no"}}},
		{"ProtectProc", "invisible", []UnitProperty{{"ProtectProc", "invisible"}}},
		{"ReadOnlyPaths", []string{"/etc/shop"}, []UnitProperty{{"ReadOnlyPaths", []string{"/etc/shop"}}}},
		{"CapabilityBoundingSet", []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE"}, []UnitProperty{{"CapabilityBoundingSet", uint64(1<<0 | 1<<10)}}},
		{"CapabilityBoundingSet", []string{}, []UnitProperty{{"CapabilityBoundingSet", uint64(0)}}},
		{"CapabilityBoundingSet", []string{"~CAP_SYS_ADMIN"}, []UnitProperty{{"CapabilityBoundingSet", uint64(1<<41-1) &^ (1 << 21)}}},
		{"AmbientCapabilities", []string{"CAP_NET_BIND_SERVICE"}, []UnitProperty{{"AmbientCapabilities", uint64(1 << 10)}}},
		{"RestrictNamespaces", true, []UnitProperty{{"RestrictNamespaces", uint64(0)}}},
		{"RestrictNamespaces", false, nil},
		{"RestrictNamespaces", []string{"net"}, []UnitProperty{{"RestrictNamespaces", uint64(0x40000000)}}},
		{"RestrictNamespaces", []string{"~user"}, []UnitProperty{{"RestrictNamespaces", uint64(0x6e020000)}}},
		{"SystemCallFilter", []string{"@system-service"}, []UnitProperty{{"SystemCallFilter", SyscallFilter{true, []string{"@system-service"}}}}},
		{"SystemCallFilter", []string{"~@privileged", "~@resources"}, []UnitProperty{{"SystemCallFilter", SyscallFilter{false, []string{"@privileged", "@resources"}}}}},
		{"RestrictAddressFamilies", []string{"AF_UNIX", "AF_INET"}, []UnitProperty{{"RestrictAddressFamilies", SyscallFilter{true, []string{"AF_UNIX", "AF_INET"}}}}},
		{"SystemCallArchitectures", []string{"native"}, []UnitProperty{{"SystemCallArchitectures", []string{"native"}}}},
		{"SystemCallErrorNumber", "EPERM", []UnitProperty{{"SystemCallErrorNumber", int32(1)}}},
		{"UMask", "0027", []UnitProperty{{"UMask", uint32(0o27)}}},
		{"UMask", int64(23), []UnitProperty{{"UMask", uint32(23)}}},
		{"LimitNOFILE", int64(65536), []UnitProperty{{"LimitNOFILE", uint64(65536)}, {"LimitNOFILESoft", uint64(65536)}}},
		{"LimitNOFILE", "1024:65536", []UnitProperty{{"LimitNOFILE", uint64(65536)}, {"LimitNOFILESoft", uint64(1024)}}},
		{"LimitCORE", "infinity", []UnitProperty{{"LimitCORE", uint64(1<<64 - 1)}, {"LimitCORESoft", uint64(1<<64 - 1)}}},
		{"TasksMax", int64(512), []UnitProperty{{"TasksMax", uint64(512)}}},
		{"TasksMax", "infinity", []UnitProperty{{"TasksMax", uint64(1<<64 - 1)}}},
		{"CPUQuota", "50%", []UnitProperty{{"CPUQuotaPerSecUSec", uint64(500000)}}},
		{"CPUQuota", "250%", []UnitProperty{{"CPUQuotaPerSecUSec", uint64(2500000)}}},
		{"CPUWeight", int64(200), []UnitProperty{{"CPUWeight", uint64(200)}}},
		{"IOWeight", int64(10), []UnitProperty{{"IOWeight", uint64(10)}}},
		{"OOMScoreAdjust", int64(-500), []UnitProperty{{"OOMScoreAdjust", int32(-500)}}},
		{"Nice", int64(5), []UnitProperty{{"Nice", int32(5)}}},
	} {
		t.Run(fmt.Sprintf("%s=%v", tc.name, tc.v), func(t *testing.T) {
			got, err := UnitProperties(UnitSettings{tc.name: tc.v})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestUnitSettingsIssues(t *testing.T) {
	for _, tc := range []struct {
		name, top, web, runtime string
		want                    []string // substrings of the one issue's message
	}{
		{"unknown, a typo", `{"ProtectSytem":"strict"}`, "", "", []string{`systemd: unknown unit setting "ProtectSytem" (did you mean "ProtectSystem"?)`}},
		{"unknown, the case", "", `{"privateTmp":true}`, "", []string{`processes[0] (web).systemd: unknown unit setting "privateTmp" (did you mean "PrivateTmp"?)`}},
		{"unknown, far off", `{"Frobnicate":1}`, "", "", []string{`unknown unit setting "Frobnicate"`}},
		{"not an object", `["PrivateTmp"]`, "", "", []string{"systemd: must be an object, got an array"}},
		{"bool as a string", `{"PrivateTmp":"yes"}`, "", "", []string{`systemd.PrivateTmp: must be true or false, got string "yes"`}},
		{"null", `{"PrivateTmp":null}`, "", "", []string{`systemd.PrivateTmp: must be true or false, got null`}},
		{"enum typo", "", `{"ProtectSystem":"strct"}`, "", []string{`processes[0] (web).systemd.ProtectSystem: must be true, false or one of "full", "strict", got string "strct" (did you mean "strict"?)`}},
		{"enum number", `{"ProtectHome":1}`, "", "", []string{`systemd.ProtectHome: must be true, false or one of "read-only", "tmpfs", got number 1`}},
		{"relative path", `{"ReadWritePaths":["var/lib/shop"]}`, "", "", []string{`systemd.ReadWritePaths: [0] "var/lib/shop" is not an absolute path`}},
		{"unclean path", `{"ReadOnlyPaths":["/srv/../etc"]}`, "", "", []string{`is not a clean path (write "/etc")`}},
		{"paths as a string", `{"InaccessiblePaths":"/home"}`, "", "", []string{`systemd.InaccessiblePaths: must be a list of absolute paths`}},
		{"capability typo", `{"CapabilityBoundingSet":["CAP_NET_BIND_SERVIC"]}`, "", "", []string{`"CAP_NET_BIND_SERVIC" is not a capability name (did you mean "CAP_NET_BIND_SERVICE"?)`}},
		{"capabilities mixed", `{"AmbientCapabilities":["CAP_KILL","~CAP_CHOWN"]}`, "", "", []string{`mixes entries with and without "~"`}},
		{"namespace typo", `{"RestrictNamespaces":["nett"]}`, "", "", []string{`"nett" is not a namespace type`, `(did you mean "net"?)`}},
		{"syscall set typo", `{"SystemCallFilter":["@system-servce"]}`, "", "", []string{`"@system-servce" is not a system call set (did you mean "@system-service"?)`}},
		{"empty filter", `{"SystemCallFilter":[]}`, "", "", []string{`systemd.SystemCallFilter: must be a non-empty list`}},
		{"family", `{"RestrictAddressFamilies":["INET"]}`, "", "", []string{`"INET" is not an address family`}},
		{"architecture", `{"SystemCallArchitectures":["amd64"]}`, "", "", []string{`"amd64" is not an architecture`}},
		{"errno", `{"SystemCallErrorNumber":"EPERMS"}`, "", "", []string{`"EPERMS" is not an errno name`}},
		{"umask digits as a number", `{"UMask":27}`, "", "", []string{}},
		{"umask too big", `{"UMask":1000}`, "", "", []string{`01750 is above 0777`}},
		{"rlimit soft above hard", `{"LimitNOFILE":"4096:1024"}`, "", "", []string{`the soft limit is above the hard one`}},
		{"rlimit negative", `{"LimitNPROC":-1}`, "", "", []string{`systemd.LimitNPROC: must be a whole number, "infinity", or "soft:hard", got number -1`}},
		{"tasks zero", `{"TasksMax":0}`, "", "", []string{`systemd.TasksMax: must be a positive whole number or "infinity", got number 0`}},
		{"cpu quota number", `{"CPUQuota":50}`, "", "", []string{`systemd.CPUQuota: must be a percentage of one CPU such as "50%" or "200%", got number 50`}},
		{"cpu quota zero", `{"CPUQuota":"0%"}`, "", "", []string{`"0%" is not a percentage between 0.01% and 100000%`}},
		{"weight range", `{"CPUWeight":0}`, "", "", []string{`systemd.CPUWeight: must be a whole number from 1 to 10000, got number 0`}},
		{"fraction", `{"Nice":1.5}`, "", "", []string{`systemd.Nice: must be a whole number from -20 to 19, got number 1.5`}},
		{"oom range", `{"OOMScoreAdjust":1001}`, "", "", []string{`from -1000 to 1000, got number 1001`}},
		{"refused ExecStart", `{"ExecStart":"/bin/evil"}`, "", "", []string{`systemd.ExecStart: ExecStart cannot be set: the command is the process's command`}},
		{"refused User", "", `{"User":"root"}`, "", []string{`processes[0] (web).systemd.User: User cannot be set: who the process runs as is user/group`}},
		{"refused KillMode", `{"KillMode":"none"}`, "", "", []string{`KillMode cannot be set: the stop sequence is the daemon's: set stopSignal and gracefulStopMs instead`}},
		{"refused Type", `{"Type":"forking"}`, "", "", []string{`Type cannot be set: the runner relies on Type=simple`}},
		{"refused Slice", `{"Slice":"system.slice"}`, "", "", []string{`Slice cannot be set: every unit lives in rollbridge-APP.slice`}},
		{"refused Environment", `{"Environment":["A=1"]}`, "", "", []string{`Environment cannot be set: the environment is env`}},
		{"refused PrivateNetwork", `{"PrivateNetwork":true}`, "", "", []string{`PrivateNetwork cannot be set: the proxy and the health check reach the process`}},
		{"refused MemoryMax", `{"MemoryMax":1}`, "", "", []string{`the hard limit is memory.maxBytes`}},
		{"exec runtime, top level", `{"PrivateTmp":true}`, "", "exec", []string{`systemd: unit settings would be ignored: runtime is 'exec'`}},
		{"exec runtime, process", "", `{"PrivateTmp":true}`, "exec", []string{`processes[0] (web).systemd: unit settings would be ignored: runtime is 'exec'`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, issues := decodeUnit(t, tc.top, tc.web, tc.runtime)
			if len(tc.want) == 0 {
				if len(issues) > 0 {
					t.Fatalf("got issues %v, want none", issues)
				}
				return
			}
			if len(issues) != 1 {
				t.Fatalf("got %d issues %v, want 1", len(issues), issues)
			}
			for _, w := range tc.want {
				if !strings.Contains(issues[0].Message, w) {
					t.Errorf("issue %q does not contain %q", issues[0].Message, w)
				}
			}
			if issues[0].Fix == "" {
				t.Error("the issue has no fix")
			}
		})
	}
}

// TestUnitSettingsFixNamesAllowedValues: a wrong value's fix says what
// the setting takes, with an example that is itself accepted.
func TestUnitSettingsFixNamesAllowedValues(t *testing.T) {
	for _, name := range UnitSettingNames() {
		u := unitSettings[name]
		_, issues := decodeUnit(t, fmt.Sprintf(`{%q:{"no":"object"}}`, name), "", "")
		if len(issues) != 1 || !strings.Contains(issues[0].Fix, u.allowed) {
			t.Errorf("%s: issues %v, want one whose fix names %q", name, issues, u.allowed)
		}
		if _, issues := decodeUnit(t, fmt.Sprintf(`{%q:%s}`, name, u.example), "", ""); len(issues) > 0 {
			t.Errorf("%s: the example %s is refused: %v", name, u.example, issues)
		}
	}
}

// TestUnitSettingsAllowedAndRefusedAreApart: no setting is both.
func TestUnitSettingsAllowedAndRefusedAreApart(t *testing.T) {
	for name := range refusedUnitSettings {
		if _, ok := unitSettings[name]; ok {
			t.Errorf("%s is both accepted and refused", name)
		}
	}
}

// FuzzUnitSetting feeds arbitrary setting names and JSON values to the
// decoder. It must not panic; a value it accepts must convert to D-Bus
// properties of the allowed Go types, and survive the normalised JSON
// form unchanged.
func FuzzUnitSetting(f *testing.F) {
	for _, name := range UnitSettingNames() {
		f.Add(name, unitSettings[name].example)
		f.Add(name, `"x"`)
	}
	f.Add("LimitNOFILE", `"infinity:infinity"`)
	f.Add("CPUQuota", `"0.005%"`)
	f.Add("ReadWritePaths", `["/a/", "-/b", "/c/./d"]`)
	f.Add("CapabilityBoundingSet", `["~CAP_CHOWN","~CAP_BPF"]`)
	f.Add("UMask", `"-1"`)
	f.Add("ExecStart", `"/bin/sh"`)
	f.Fuzz(func(t *testing.T, name, value string) {
		var v any
		if json.Unmarshal([]byte(value), &v) != nil {
			return
		}
		obj, _ := json.Marshal(map[string]json.RawMessage{name: json.RawMessage(value)})
		cfg, err := Decode(unitConfig(`,"systemd":`+string(obj), "", ""), "/srv/app/rollbridge.jsonnet")
		if err != nil {
			if _, ok := err.(Issues); !ok {
				t.Fatalf("Decode returned %T, want Issues", err)
			}
			return
		}
		props, err := UnitProperties(cfg.Systemd)
		if err != nil {
			t.Fatalf("accepted %s=%s, but it does not convert: %v", name, value, err)
		}
		for _, p := range props {
			switch p.Value.(type) {
			case bool, string, []string, uint64, uint32, int32, SyscallFilter:
			default:
				t.Fatalf("%s=%s: property %s has a %T", name, value, p.Name, p.Value)
			}
		}
		out, _ := json.Marshal(cfg)
		again, err := Decode(out, cfg.Path)
		if err != nil {
			t.Fatalf("normalised form does not validate: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again.Systemd, cfg.Systemd) {
			t.Fatalf("round trip changed the settings: %v, then %v", cfg.Systemd, again.Systemd)
		}
	})
}

// TestDocsListUnitSettings keeps docs/config.md's tables of accepted and
// refused unit settings in step with the code.
func TestDocsListUnitSettings(t *testing.T) {
	data, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	start := strings.Index(doc, "\n### `systemd` (unit settings)\n")
	if start < 0 {
		t.Fatal("docs/config.md has no \"### `systemd` (unit settings)\" section")
	}
	section := doc[start+1:]
	section = section[:strings.Index(section, "\n## ")]
	for _, name := range append(UnitSettingNames(), refusedNames()...) {
		if !strings.Contains(section, "`"+name+"`") {
			t.Errorf("the systemd section of docs/config.md does not name `%s`", name)
		}
	}
}
