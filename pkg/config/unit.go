package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// UnitSettings is the `systemd` field (extension), top level and per
// process: systemd unit settings for each instance's transient unit —
// sandboxing (ProtectSystem, PrivateTmp, ...) and resource limits
// (LimitNOFILE, CPUQuota, ...). Keys are the directive names of
// systemd.exec(5) and systemd.resource-control(5), spelt as in a unit
// file; values are JSON values (a boolean, a string, a whole number, a
// list of strings), decoded by Decode into bool, string, int64 or
// []string and kept as given, so the normalised config reads like the
// config that was written.
//
// Only the settings of UnitSettingNames are accepted: each has a known
// value type and a known D-Bus form (UnitProperties). Settings the
// supervision relies on (ExecStart, User, KillMode, Slice, ...) are
// refused with the reason.
type UnitSettings map[string]any

// UnitProperty is one unit property in the form systemd's D-Bus API
// (StartTransientUnit) takes it: the D-Bus property name, which is not
// always the directive's (CPUQuota= is CPUQuotaPerSecUSec), and a value
// whose Go type has the property's D-Bus signature (bool "b", string "s",
// []string "as", uint64 "t", uint32 "u", int32 "i", SyscallFilter
// "(bas)"). It holds no godbus type: pkg/systemd wraps it in a variant.
type UnitProperty struct {
	Name  string
	Value any
}

// SyscallFilter is the "(bas)" value of SystemCallFilter and
// RestrictAddressFamilies: an allow list (AllowList true) or a deny list
// (the unit file's "~" form).
type SyscallFilter struct {
	AllowList bool
	Names     []string
}

// UnitSettingsFor is what p's unit gets: the config's systemd settings,
// overridden setting by setting by the process's own (a process list
// replaces the config's list; it is not appended to). nil when neither
// sets anything.
func (c *Config) UnitSettingsFor(p *Process) UnitSettings {
	if len(c.Systemd) == 0 && len(p.Systemd) == 0 {
		return nil
	}
	out := make(UnitSettings, len(c.Systemd)+len(p.Systemd))
	for k, v := range c.Systemd {
		out[k] = v
	}
	for k, v := range p.Systemd {
		out[k] = v
	}
	return out
}

// UnitProperties turns validated settings into D-Bus properties, in the
// order of the settings' names. Settings from Decode always convert; an
// error means a hand-built value that Decode would have refused.
func UnitProperties(s UnitSettings) ([]UnitProperty, error) {
	names := make([]string, 0, len(s))
	for k := range s {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []UnitProperty
	for _, name := range names {
		u, ok := unitSettings[name]
		if !ok {
			return nil, fmt.Errorf("systemd.%s: not a supported unit setting", name)
		}
		props, problem := u.build(s[name])
		if problem != "" {
			return nil, fmt.Errorf("systemd.%s: %s", name, problem)
		}
		out = append(out, props...)
	}
	return out, nil
}

// UnitSettingNames lists the accepted settings, sorted.
func UnitSettingNames() []string { return slices.Sorted(maps.Keys(unitSettings)) }

// unitSetting is one accepted setting: the values it takes, in words and
// as an example (for issues), and how a value becomes D-Bus properties.
type unitSetting struct {
	allowed string // `true or false`
	example string // `true`
	// build turns a canonical value (bool, string, int64, []string) into
	// properties; problem is "" when the value is good, else what is wrong
	// with it ("got ..." is added by the caller).
	build func(v any) (props []UnitProperty, problem string)
}

// unitSettings is the allow-list. D-Bus names and signatures are those of
// org.freedesktop.systemd1(5) for systemd 252 (Debian 12), the oldest
// systemd CI runs; every setting here exists there.
var unitSettings = map[string]unitSetting{}

func init() {
	for _, name := range []string{
		"NoNewPrivileges", "PrivateTmp", "PrivateDevices", "PrivateMounts",
		"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectControlGroups", "ProtectClock", "ProtectHostname",
		"RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
		"MemoryDenyWriteExecute", "RemoveIPC",
	} {
		unitSettings[name] = boolSetting(name)
	}
	unitSettings["ProtectSystem"] = enumSetting("ProtectSystem", true, "strict", "yes", "no", "full", "strict")
	unitSettings["ProtectHome"] = enumSetting("ProtectHome", true, "read-only", "yes", "no", "read-only", "tmpfs")
	unitSettings["ProtectProc"] = enumSetting("ProtectProc", false, "invisible", "noaccess", "invisible", "ptraceable", "default")
	unitSettings["ProcSubset"] = enumSetting("ProcSubset", false, "pid", "all", "pid")
	for _, name := range []string{"ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths"} {
		unitSettings[name] = pathsSetting(name)
	}
	unitSettings["CapabilityBoundingSet"] = capsSetting("CapabilityBoundingSet")
	unitSettings["AmbientCapabilities"] = capsSetting("AmbientCapabilities")
	unitSettings["RestrictNamespaces"] = namespacesSetting()
	unitSettings["SystemCallFilter"] = filterSetting("SystemCallFilter", `["@system-service"]`, checkSyscall)
	unitSettings["RestrictAddressFamilies"] = filterSetting("RestrictAddressFamilies", `["AF_UNIX", "AF_INET", "AF_INET6"]`, checkFamily)
	unitSettings["SystemCallArchitectures"] = archSetting()
	unitSettings["SystemCallErrorNumber"] = errnoSetting()
	unitSettings["UMask"] = umaskSetting()
	for _, name := range []string{"LimitNOFILE", "LimitNPROC", "LimitCORE"} {
		unitSettings[name] = rlimitSetting(name)
	}
	unitSettings["TasksMax"] = tasksMaxSetting()
	unitSettings["CPUQuota"] = cpuQuotaSetting()
	unitSettings["CPUWeight"] = intSetting("CPUWeight", 1, 10000, 50, func(n int64) any { return uint64(n) })
	unitSettings["IOWeight"] = intSetting("IOWeight", 1, 10000, 50, func(n int64) any { return uint64(n) })
	unitSettings["OOMScoreAdjust"] = intSetting("OOMScoreAdjust", -1000, 1000, 500, func(n int64) any { return int32(n) })
	unitSettings["Nice"] = intSetting("Nice", -20, 19, 5, func(n int64) any { return int32(n) })
}

// refusedUnitSettings are settings a config may not set, with the reason
// (and what to use instead): the runner sets them, and the supervision
// (stop sequence, restarts, re-adoption, logs) depends on their values.
var refusedUnitSettings = map[string]string{}

func init() {
	refuse := func(why string, names ...string) {
		for _, n := range names {
			refusedUnitSettings[n] = why
		}
	}
	refuse("the command is the process's command (run by /bin/sh -c); stop hooks are lifecycle.*",
		"ExecStart", "ExecStartPre", "ExecStartPost", "ExecCondition", "ExecStop", "ExecStopPost", "ExecReload")
	refuse("the runner relies on Type=simple with RemainAfterExit=yes to see the process start and keep its exit status",
		"Type", "RemainAfterExit", "NotifyAccess", "PIDFile", "GuessMainPID", "WatchdogSec")
	refuse("restarts are the daemon's, under the process's restart policy (restart, restartDelayMs); systemd must not restart the unit behind its back",
		"Restart", "RestartSec", "RestartPreventExitStatus", "RestartForceExitStatus", "SuccessExitStatus", "StartLimitIntervalSec", "StartLimitBurst")
	refuse("the stop sequence is the daemon's: set stopSignal and gracefulStopMs instead",
		"KillMode", "KillSignal", "SendSIGKILL", "SendSIGHUP", "FinalKillSignal", "RestartKillSignal", "TimeoutStopSec", "TimeoutSec", "TimeoutStartSec")
	refuse("who the process runs as is user/group (top level or per process), resolved by the daemon at each deploy",
		"User", "Group", "DynamicUser", "SupplementaryGroups")
	refuse("every unit lives in rollbridge-APP.slice, where a restarted daemon finds and adopts it again", "Slice")
	refuse("the daemon owns the unit's ordering and dependencies (Before= the daemon, so it stops first at poweroff)",
		"Description", "Before", "After", "Requires", "Wants", "BindsTo", "PartOf", "Conflicts")
	refuse("the environment is env (passed through a 0600 file; Environment= is readable by every local user with systemctl show)",
		"Environment", "EnvironmentFile", "PassEnvironment", "UnsetEnvironment")
	refuse("the working directory is cwd", "WorkingDirectory")
	refuse("the command and cwd are paths of the host's file system", "RootDirectory", "RootImage")
	refuse("the daemon reads the process's output back from the journal by these settings",
		"StandardOutput", "StandardError", "StandardInput", "SyslogIdentifier", "LogExtraFields")
	refuse("memory supervision needs the unit's memory accounting; the hard limit is memory.maxBytes",
		"MemoryMax", "MemoryAccounting", "MemoryLimit")
	refuse("the proxy and the health check reach the process in the host's network (proxy.upstreamHost)",
		"PrivateNetwork", "NetworkNamespacePath", "JoinsNamespaceOf")
}

// decodeUnitSettings reads a `systemd` object at path. Every entry is
// checked against the allow-list; ok is false when v is not an object.
func decodeUnitSettings(c *collector, path string, v any) (UnitSettings, bool) {
	const fix = "Set systemd to an object of unit settings, e.g. systemd: {ProtectSystem: 'strict', PrivateTmp: true, NoNewPrivileges: true}."
	m, ok := v.(map[string]any)
	if !ok {
		c.add(path, fix, "must be an object, got %s", describe(v))
		return nil, false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(UnitSettings, len(m))
	for _, k := range keys {
		where := path + "." + k
		if why, refused := refusedUnitSettings[k]; refused {
			c.add(where, fmt.Sprintf("Remove %s.", k), "%s cannot be set: %s", k, why)
			continue
		}
		u, known := unitSettings[k]
		if !known {
			names := UnitSettingNames()
			msg := fmt.Sprintf("unknown unit setting %q", k)
			fixText := fmt.Sprintf("Remove %q; the settings rollbridge passes to systemd are: %s.", k, strings.Join(names, ", "))
			if s := suggest(k, append(names, refusedNames()...)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
				fixText = fmt.Sprintf("Rename %q to %q.", k, s)
			}
			c.add(path, fixText, "%s", msg)
			continue
		}
		val, canonical := canonicalUnitValue(m[k])
		fixText := fmt.Sprintf("Set %s to %s, e.g. %s: %s.", k, u.allowed, k, u.example)
		if !canonical {
			c.add(where, fixText, "must be %s, got %s", u.allowed, describe(m[k]))
			continue
		}
		if _, problem := u.build(val); problem != "" {
			c.add(where, fixText, "%s", problem)
			continue
		}
		out[k] = val
	}
	return out, true
}

func refusedNames() []string { return slices.Sorted(maps.Keys(refusedUnitSettings)) }

// canonicalUnitValue turns a decoded JSON value into the Go value the
// settings are kept as: bool, string, int64 (a whole number) or []string.
// ok is false for anything else (null, an object, a fraction, a list that
// holds a non-string).
func canonicalUnitValue(v any) (any, bool) {
	switch x := v.(type) {
	case bool, string:
		return x, true
	case json.Number:
		f, err := x.Float64()
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, false
		}
		return int64(f), true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// got describes a canonical value for an issue.
func got(v any) string {
	switch x := v.(type) {
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case int64:
		return "number " + strconv.FormatInt(x, 10)
	case string:
		return fmt.Sprintf("string %q", truncate(x, 40))
	case []string:
		return "a list of strings"
	}
	return fmt.Sprintf("%T", v)
}

func boolSetting(name string) unitSetting {
	return unitSetting{allowed: "true or false", example: "true", build: func(v any) ([]UnitProperty, string) {
		b, ok := v.(bool)
		if !ok {
			return nil, "must be true or false, got " + got(v)
		}
		return []UnitProperty{{name, b}}, ""
	}}
}

// enumSetting takes one of values; withBool also takes true and false,
// which are "yes" and "no" (values[0] and values[1] then).
func enumSetting(name string, withBool bool, example string, values ...string) unitSetting {
	quoted := make([]string, len(values))
	for i, s := range values {
		quoted[i] = strconv.Quote(s)
	}
	allowed := "one of " + strings.Join(quoted, ", ")
	if withBool {
		allowed = "true, false or one of " + strings.Join(quoted[2:], ", ")
	}
	return unitSetting{allowed: allowed, example: strconv.Quote(example), build: func(v any) ([]UnitProperty, string) {
		switch x := v.(type) {
		case bool:
			if withBool {
				s := "no"
				if x {
					s = "yes"
				}
				return []UnitProperty{{name, s}}, ""
			}
		case string:
			if containsStr(values, x) {
				return []UnitProperty{{name, x}}, ""
			}
			problem := "must be " + allowed + ", got " + got(v)
			if s := suggest(x, values); s != "" {
				problem += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return nil, problem
		}
		return nil, "must be " + allowed + ", got " + got(v)
	}}
}

// pathsSetting takes a list of absolute paths, each optionally prefixed
// with "-" (systemd then ignores a path that does not exist).
func pathsSetting(name string) unitSetting {
	const allowed = `a list of absolute paths (a leading "-" ignores a missing one)`
	return unitSetting{allowed: allowed, example: `["/var/lib/shop", "-/srv/shop/shared"]`, build: func(v any) ([]UnitProperty, string) {
		list, ok := v.([]string)
		if !ok {
			return nil, "must be " + allowed + ", got " + got(v)
		}
		for i, p := range list {
			path := strings.TrimPrefix(p, "-")
			switch {
			case !filepath.IsAbs(path):
				return nil, fmt.Sprintf("[%d] %q is not an absolute path", i, p)
			case strings.ContainsFunc(path, func(r rune) bool { return r < 0x20 || r == 0x7f }):
				return nil, fmt.Sprintf("[%d] %q holds a control character", i, p)
			case filepath.Clean(path) != path && filepath.Clean(path)+"/" != path:
				return nil, fmt.Sprintf("[%d] %q is not a clean path (write %q)", i, p, strings.TrimSuffix(p, path)+filepath.Clean(path))
			}
		}
		return []UnitProperty{{name, append([]string{}, list...)}}, ""
	}}
}

// capabilityNames are the capabilities by number (linux/capability.h, up
// to CAP_CHECKPOINT_RESTORE, the last one Linux 5.9 added).
var capabilityNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// capsSetting takes a list of capability names (the unit file's
// "CAP_NET_BIND_SERVICE CAP_KILL"), or a list whose every name starts
// with "~" (all capabilities but those); [] is none. D-Bus: a "t" mask.
func capsSetting(name string) unitSetting {
	const allowed = `a list of capability names such as "CAP_NET_BIND_SERVICE", or of names each prefixed with "~" for all but those ([] is none)`
	return unitSetting{allowed: allowed, example: `["CAP_NET_BIND_SERVICE"]`, build: func(v any) ([]UnitProperty, string) {
		list, ok := v.([]string)
		if !ok {
			return nil, "must be " + allowed + ", got " + got(v)
		}
		invert, names, problem := splitInverted(list)
		if problem != "" {
			return nil, problem
		}
		var mask uint64
		for i, n := range names {
			bit := -1
			for j, c := range capabilityNames {
				if c == n {
					bit = j
				}
			}
			if bit < 0 {
				problem := fmt.Sprintf("[%d] %q is not a capability name", i, n)
				if s := suggest(n, capabilityNames); s != "" {
					problem += fmt.Sprintf(" (did you mean %q?)", s)
				}
				return nil, problem
			}
			mask |= 1 << bit
		}
		if invert {
			mask = (1<<len(capabilityNames) - 1) &^ mask
		}
		return []UnitProperty{{name, mask}}, ""
	}}
}

// splitInverted reads a list in the unit file's "~" convention: every
// entry starts with "~" (a deny list, invert true) or none does.
func splitInverted(list []string) (invert bool, names []string, problem string) {
	for i, s := range list {
		n, inv := strings.CutPrefix(s, "~")
		if i == 0 {
			invert = inv
		} else if inv != invert {
			return false, nil, `mixes entries with and without "~": prefix every entry with "~" (all but these) or none (only these)`
		}
		names = append(names, n)
	}
	return invert, names, ""
}

// namespaceFlags are the namespace types of RestrictNamespaces in
// systemd 252 (its NAMESPACE_FLAGS_ALL; "time" came later).
var namespaceFlags = []struct {
	name string
	flag uint64
}{
	{"cgroup", unix.CLONE_NEWCGROUP}, {"ipc", unix.CLONE_NEWIPC}, {"net", unix.CLONE_NEWNET},
	{"mnt", unix.CLONE_NEWNS}, {"pid", unix.CLONE_NEWPID}, {"user", unix.CLONE_NEWUSER}, {"uts", unix.CLONE_NEWUTS},
}

// namespacesSetting: true restricts every namespace type, false none; a
// list names the types still allowed, a "~" list the types refused.
// D-Bus: a "t" mask of the allowed CLONE_NEW* flags. false sends nothing
// (no restriction is the default), so it can undo a config-wide true.
func namespacesSetting() unitSetting {
	var names []string
	var all uint64
	for _, f := range namespaceFlags {
		names = append(names, f.name)
		all |= f.flag
	}
	allowed := `true, false, a list of the namespace types still allowed (` + strings.Join(names, ", ") + `), or of types each prefixed with "~" to refuse only those`
	return unitSetting{allowed: allowed, example: `true`, build: func(v any) ([]UnitProperty, string) {
		switch x := v.(type) {
		case bool:
			if !x {
				return nil, ""
			}
			return []UnitProperty{{"RestrictNamespaces", uint64(0)}}, ""
		case []string:
			invert, list, problem := splitInverted(x)
			if problem != "" {
				return nil, problem
			}
			var mask uint64
			for i, n := range list {
				found := false
				for _, f := range namespaceFlags {
					if f.name == n {
						mask |= f.flag
						found = true
					}
				}
				if !found {
					problem := fmt.Sprintf("[%d] %q is not a namespace type (%s)", i, n, strings.Join(names, ", "))
					if s := suggest(n, names); s != "" {
						problem += fmt.Sprintf(" (did you mean %q?)", s)
					}
					return nil, problem
				}
			}
			if invert {
				mask = all &^ mask
			}
			return []UnitProperty{{"RestrictNamespaces", mask}}, ""
		}
		return nil, "must be " + allowed + ", got " + got(v)
	}}
}

// syscallGroups are systemd 252's system call sets (systemd-analyze
// syscall-filter).
var syscallGroups = []string{
	"@default", "@aio", "@basic-io", "@chown", "@clock", "@cpu-emulation", "@debug",
	"@file-system", "@io-event", "@ipc", "@keyring", "@known", "@memlock", "@module",
	"@mount", "@network-io", "@obsolete", "@pkey", "@privileged", "@process", "@raw-io",
	"@reboot", "@resources", "@sandbox", "@setuid", "@signal", "@swap", "@sync",
	"@system-service", "@timer",
}

func checkSyscall(s string) string {
	if strings.HasPrefix(s, "@") {
		if containsStr(syscallGroups, s) {
			return ""
		}
		problem := fmt.Sprintf("%q is not a system call set", s)
		if g := suggest(s, syscallGroups); g != "" {
			problem += fmt.Sprintf(" (did you mean %q?)", g)
		}
		return problem
	}
	if s == "" || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return fmt.Sprintf("%q is neither a system call name nor a set such as \"@system-service\"", s)
	}
	return ""
}

func checkFamily(s string) string {
	rest, ok := strings.CutPrefix(s, "AF_")
	if !ok || rest == "" || strings.Trim(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
		return fmt.Sprintf("%q is not an address family such as \"AF_INET\"", s)
	}
	return ""
}

// filterSetting takes a non-empty list of names (an allow list) or of
// names each prefixed with "~" (a deny list). D-Bus: "(bas)".
func filterSetting(name, example string, check func(string) string) unitSetting {
	allowed := `a non-empty list of names (only these), or of names each prefixed with "~" (all but these)`
	return unitSetting{allowed: allowed, example: example, build: func(v any) ([]UnitProperty, string) {
		list, ok := v.([]string)
		if !ok || len(list) == 0 {
			return nil, "must be " + allowed + ", got " + got(v)
		}
		invert, names, problem := splitInverted(list)
		if problem != "" {
			return nil, problem
		}
		for i, n := range names {
			if p := check(n); p != "" {
				return nil, fmt.Sprintf("[%d] %s", i, p)
			}
		}
		return []UnitProperty{{name, SyscallFilter{AllowList: !invert, Names: names}}}, ""
	}}
}

// architectures are the names SystemCallArchitectures takes.
var architectures = []string{
	"native", "x86", "x86-64", "x32", "arm", "arm64", "mips", "mips-le", "mips64", "mips64-le",
	"ppc", "ppc64", "ppc64-le", "riscv64", "s390", "s390x",
}

func archSetting() unitSetting {
	const allowed = `a list of architectures such as "native" or "x86-64"`
	return unitSetting{allowed: allowed, example: `["native"]`, build: func(v any) ([]UnitProperty, string) {
		list, ok := v.([]string)
		if !ok {
			return nil, "must be " + allowed + ", got " + got(v)
		}
		for i, a := range list {
			if !containsStr(architectures, a) {
				problem := fmt.Sprintf("[%d] %q is not an architecture (%s)", i, a, strings.Join(architectures, ", "))
				if s := suggest(a, architectures); s != "" {
					problem += fmt.Sprintf(" (did you mean %q?)", s)
				}
				return nil, problem
			}
		}
		return []UnitProperty{{"SystemCallArchitectures", append([]string{}, list...)}}, ""
	}}
}

// errnoNumber maps errno names ("EPERM") to their numbers.
func errnoNumber(name string) (int32, bool) {
	for e := syscall.Errno(1); e < 256; e++ {
		if unix.ErrnoName(e) == name {
			return int32(e), true
		}
	}
	return 0, false
}

func errnoSetting() unitSetting {
	const allowed = `an errno name such as "EPERM"`
	return unitSetting{allowed: allowed, example: `"EPERM"`, build: func(v any) ([]UnitProperty, string) {
		s, ok := v.(string)
		if !ok {
			return nil, "must be " + allowed + ", got " + got(v)
		}
		n, ok := errnoNumber(s)
		if !ok {
			return nil, fmt.Sprintf("%q is not an errno name such as \"EPERM\" or \"EACCES\"", s)
		}
		return []UnitProperty{{"SystemCallErrorNumber", n}}, ""
	}}
}

// umaskSetting takes an octal string ("0027", as in a unit file) or the
// mode's numeric value. D-Bus: "u".
func umaskSetting() unitSetting {
	const allowed = `an octal string such as "0027"`
	return unitSetting{allowed: allowed, example: `"0027"`, build: func(v any) ([]UnitProperty, string) {
		var m uint64
		switch x := v.(type) {
		case string:
			n, err := strconv.ParseUint(x, 8, 32)
			if err != nil || x == "" {
				return nil, fmt.Sprintf("%q is not an octal mode such as \"0027\"", x)
			}
			m = n
		case int64:
			if x < 0 {
				return nil, "must be " + allowed + ", got " + got(v)
			}
			m = uint64(x)
		default:
			return nil, "must be " + allowed + ", got " + got(v)
		}
		if m > 0o777 {
			return nil, fmt.Sprintf("%#o is above 0777 (a number is the mask's value, not its octal digits: write the string)", m)
		}
		return []UnitProperty{{"UMask", uint32(m)}}, ""
	}}
}

// infinity is RLIM_INFINITY and systemd's "infinity" for TasksMax.
const infinity = math.MaxUint64

// rlimitSetting takes a number, "infinity", or "soft:hard" (each a number
// or "infinity"). D-Bus: the hard limit as NAME and the soft one as
// NAMESoft, both "t" — systemd-run sends both, and a transient unit with
// only one gets the other from nowhere.
func rlimitSetting(name string) unitSetting {
	const allowed = `a whole number, "infinity", or "soft:hard"`
	parse := func(s string) (uint64, bool) {
		if s == "infinity" {
			return infinity, true
		}
		n, err := strconv.ParseUint(s, 10, 64)
		return n, err == nil && n != infinity
	}
	return unitSetting{allowed: allowed, example: `65536`, build: func(v any) ([]UnitProperty, string) {
		var soft, hard uint64
		switch x := v.(type) {
		case int64:
			if x < 0 {
				return nil, "must be " + allowed + ", got " + got(v)
			}
			soft, hard = uint64(x), uint64(x)
		case string:
			s, h, pair := strings.Cut(x, ":")
			var ok1, ok2 bool
			soft, ok1 = parse(s)
			hard, ok2 = soft, true
			if pair {
				hard, ok2 = parse(h)
			}
			if !ok1 || !ok2 {
				return nil, fmt.Sprintf("%q is not a limit: write a whole number, \"infinity\" or \"soft:hard\" such as \"1024:65536\"", x)
			}
			if soft > hard {
				return nil, fmt.Sprintf("%q: the soft limit is above the hard one", x)
			}
		default:
			return nil, "must be " + allowed + ", got " + got(v)
		}
		return []UnitProperty{{name, hard}, {name + "Soft", soft}}, ""
	}}
}

func tasksMaxSetting() unitSetting {
	const allowed = `a positive whole number or "infinity"`
	return unitSetting{allowed: allowed, example: `512`, build: func(v any) ([]UnitProperty, string) {
		switch x := v.(type) {
		case int64:
			if x >= 1 {
				return []UnitProperty{{"TasksMax", uint64(x)}}, ""
			}
		case string:
			if x == "infinity" {
				return []UnitProperty{{"TasksMax", uint64(infinity)}}, ""
			}
		}
		return nil, "must be " + allowed + ", got " + got(v)
	}}
}

// cpuQuotaSetting takes a percentage of one CPU ("50%", "200%" for two
// CPUs). D-Bus: CPUQuotaPerSecUSec "t", the CPU time per second of wall
// clock time in microseconds (1% = 10000).
func cpuQuotaSetting() unitSetting {
	const allowed = `a percentage of one CPU such as "50%" or "200%"`
	return unitSetting{allowed: allowed, example: `"50%"`, build: func(v any) ([]UnitProperty, string) {
		s, ok := v.(string)
		if !ok {
			return nil, "must be " + allowed + ", got " + got(v)
		}
		num, pct := strings.CutSuffix(s, "%")
		f, err := strconv.ParseFloat(num, 64)
		if !pct || err != nil || strings.ContainsAny(num, "eEx+-") || f < 0.01 || f > 100000 {
			return nil, fmt.Sprintf("%q is not a percentage between 0.01%% and 100000%%", s)
		}
		return []UnitProperty{{"CPUQuotaPerSecUSec", uint64(math.Round(f * 10000))}}, ""
	}}
}

func intSetting(name string, lo, hi, example int64, conv func(int64) any) unitSetting {
	allowed := fmt.Sprintf("a whole number from %d to %d", lo, hi)
	return unitSetting{allowed: allowed, example: strconv.FormatInt(example, 10), build: func(v any) ([]UnitProperty, string) {
		n, ok := v.(int64)
		if !ok || n < lo || n > hi {
			return nil, "must be " + allowed + ", got " + got(v)
		}
		return []UnitProperty{{name, conv(n)}}, ""
	}}
}
