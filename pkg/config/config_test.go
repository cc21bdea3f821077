package config

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// web is a valid proxied process used as the base of most cases.
const web = `{id: 'web', policy: 'proxied', command: 'serve --port {{port}}', port: {from: 18000, to: 18010}}`

// writeConfig writes src as app/rollbridge.jsonnet in a temp dir and returns the path.
func writeConfig(t testing.TB, src string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func load(t testing.TB, src string, env map[string]string) (*Config, error) {
	t.Helper()
	return Load(writeConfig(t, src), env)
}

func mustLoad(t testing.TB, src string) *Config {
	t.Helper()
	cfg, err := load(t, src, nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return cfg
}

func TestDefaults(t *testing.T) {
	cfg := mustLoad(t, `{proxy: {}, processes: [`+web+`, {id: 'worker', command: 'work'}]}`)
	if cfg.Application != "app" {
		t.Errorf("application = %q, want the config directory's basename %q", cfg.Application, "app")
	}
	if cfg.Control.Path != "/run/rollbridge/app.sock" || cfg.Control.Mode != nil {
		t.Errorf("control = %+v", cfg.Control)
	}
	wantProxy := Proxy{Host: "127.0.0.1", Port: 8182, UpstreamHost: "127.0.0.1", HealthPath: "/ping",
		HealthTimeoutMs: 30000, DrainTimeoutMs: 60000, ForceStopTimeoutMs: 10000, TrustedProxies: []netip.Prefix{}, HoldTimeoutMs: 30000, UpstreamTimeoutMs: 60000, CanaryCookie: "rollbridge_canary",
		MaxHeld: 4096, HoldRelease: 32, PauseTimeoutMs: 60000, MaxPauseTimeoutMs: 900000,
		Maintenance: Maintenance{RetryAfterMs: 60000, BypassClients: []netip.Prefix{}}}
	if !reflect.DeepEqual(cfg.Proxy, wantProxy) {
		t.Errorf("proxy = %+v, want %+v", cfg.Proxy, wantProxy)
	}
	if cfg.ReleaseRetention != (ReleaseRetention{Keep: 10}) || cfg.StatePath != "" || cfg.LegacyTakeover != nil || !cfg.RestoreOnStart {
		t.Errorf("top-level defaults wrong: %+v", cfg)
	}
	w := cfg.Proxied()
	if w.Health == nil || *w.Health != (Health{Path: "/ping", TimeoutMs: 30000, IntervalMs: 250}) {
		t.Errorf("health = %+v", w.Health)
	}
	wk := cfg.ProcessByID("worker")
	if wk.Policy != Companion || wk.Cwd != "{{releasePath}}" || wk.StopSignal != "SIGTERM" || wk.GracefulStopMs != 10000 ||
		wk.RestartDelayMs != 1000 || wk.Replicas != 1 || wk.OutputLines != 50 || wk.Restart.MaxRestarts != nil ||
		wk.Restart.BackoffFactor != 1 || wk.Memory != nil || wk.Lifecycle != nil || wk.NonBlockingDrain || len(wk.Env) != 0 {
		t.Errorf("process defaults wrong: %+v", wk)
	}
}

func TestInheritedDefaults(t *testing.T) {
	cfg := mustLoad(t, `{proxy: {host: '0.0.0.0', healthPath: '/up', healthTimeoutMs: 5000, forceStopTimeoutMs: 3000},
		legacyTakeover: {screens: ['old']},
		processes: [`+web+`, {id: 'm', command: 'x', memory: {limitBytes: 100}}]}`)
	if cfg.Proxy.UpstreamHost != "127.0.0.1" {
		t.Errorf("wildcard host: upstreamHost = %q, want 127.0.0.1", cfg.Proxy.UpstreamHost)
	}
	if h := cfg.Proxied().Health; h.Path != "/up" || h.TimeoutMs != 5000 {
		t.Errorf("health should inherit proxy defaults: %+v", h)
	}
	if g := cfg.ProcessByID("m").GracefulStopMs; g != 3000 {
		t.Errorf("gracefulStopMs = %d, want proxy.forceStopTimeoutMs 3000", g)
	}
	if m := cfg.ProcessByID("m").Memory; m.CheckIntervalMs != 5000 {
		t.Errorf("memory.checkIntervalMs = %d, want 5000", m.CheckIntervalMs)
	}
	if lt := cfg.LegacyTakeover; lt.ForceStopTimeoutMs != 3000 || len(lt.Processes) != 0 {
		t.Errorf("legacyTakeover = %+v", lt)
	}
	cfg = mustLoad(t, `{proxy: {host: '::'}, processes: [`+web+`]}`)
	if cfg.Proxy.UpstreamHost != "127.0.0.1" {
		t.Errorf(":: host: upstreamHost = %q", cfg.Proxy.UpstreamHost)
	}
	cfg = mustLoad(t, `{proxy: {host: '10.0.0.5'}, processes: [`+web+`]}`)
	if cfg.Proxy.UpstreamHost != "10.0.0.5" {
		t.Errorf("upstreamHost = %q, want proxy.host", cfg.Proxy.UpstreamHost)
	}
}

func TestFullConfigFields(t *testing.T) {
	cfg := mustLoad(t, `{
		application: 'shop', statePath: '/var/lib/rb/shop.json', restoreOnStart: false,
		control: {path: '/run/rb.sock', mode: '660', owner: 1000, group: 'deploy'},
		proxy: {host: '127.0.0.1', port: 9000, upstreamHost: '127.0.0.2', drainTimeoutMs: 0},
		releaseRetention: {keep: 0, maxAgeMs: 86400000},
		legacyTakeover: {forceStopTimeoutMs: 500, screens: ['a'], processes: [{includes: ['x', 'y']}, {name: 'n', includes: ['z']}]},
		processes: [
		  {id: 'web', policy: 'proxied', command: 'w {{port}}', port: 18000, health: {path: '/h', timeoutMs: 1, intervalMs: 2, startDelayMs: 3}},
		  {id: 'worker', command: 'w', replicas: 3, nonBlockingDrain: true, stopSignal: 'SIGINT', gracefulStopMs: 0, restartDelayMs: 5,
		   lifecycle: {quietCommand: 'q', drainCommand: 'd', drainTimeoutMs: 10},
		   restart: {maxRestarts: 0, windowMs: 1, backoffFactor: 1.5, maxDelayMs: 2},
		   memory: {limitBytes: 1000, warnBytes: 10, checkIntervalMs: 7}, outputLines: 3, env: {A: 'b'}, cwd: '/tmp'},
		  {id: 'svc', policy: 'service', command: 's', port: 7000, lifecycle: {stopCommand: 'stop'}},
		  {id: 'cron', policy: 'singleton', command: 'c', health: false},
		]}`)
	if cfg.Application != "shop" || cfg.StatePath != "/var/lib/rb/shop.json" || cfg.RestoreOnStart {
		t.Errorf("top: %+v", cfg)
	}
	if *cfg.Control.Mode != 0o660 || cfg.Control.Owner.ID != 1000 || cfg.Control.Group.Name != "deploy" {
		t.Errorf("control: %+v", cfg.Control)
	}
	if cfg.Proxy.Port != 9000 || cfg.Proxy.UpstreamHost != "127.0.0.2" || cfg.Proxy.DrainTimeoutMs != 0 {
		t.Errorf("proxy: %+v", cfg.Proxy)
	}
	if cfg.ReleaseRetention != (ReleaseRetention{Keep: 0, MaxAgeMs: 86400000}) {
		t.Errorf("retention: %+v", cfg.ReleaseRetention)
	}
	lt := cfg.LegacyTakeover
	if lt.ForceStopTimeoutMs != 500 || lt.Processes[0].Name != "legacy process 1" || lt.Processes[1].Name != "n" || len(lt.Processes[0].Includes) != 2 {
		t.Errorf("legacy: %+v", lt)
	}
	w := cfg.Proxied()
	if *w.Port != (PortRange{18000, 18000}) || *w.Health != (Health{Path: "/h", TimeoutMs: 1, IntervalMs: 2, StartDelayMs: 3}) {
		t.Errorf("web: %+v %+v", w.Port, w.Health)
	}
	wk := cfg.ProcessByID("worker")
	if wk.Replicas != 3 || !wk.NonBlockingDrain || wk.StopSignal != "SIGINT" || wk.GracefulStopMs != 0 || wk.RestartDelayMs != 5 ||
		*wk.Lifecycle != (Lifecycle{QuietCommand: "q", DrainCommand: "d", DrainTimeoutMs: 10}) ||
		*wk.Restart.MaxRestarts != 0 || wk.Restart.WindowMs != 1 || wk.Restart.BackoffFactor != 1.5 || wk.Restart.MaxDelayMs != 2 ||
		*wk.Memory != (Memory{LimitBytes: 1000, WarnBytes: 10, CheckIntervalMs: 7}) || wk.OutputLines != 3 || wk.Env["A"] != "b" || wk.Cwd != "/tmp" {
		t.Errorf("worker: %+v", wk)
	}
	if wk.InstanceID(2) != "worker#2" || w.InstanceID(0) != "web" {
		t.Errorf("instance ids: %q %q", wk.InstanceID(2), w.InstanceID(0))
	}
	if !cfg.ProcessByID("cron").Health.Disabled || cfg.ProcessByID("cron").HealthEnabled() || !w.HealthEnabled() {
		t.Errorf("health false not kept")
	}
}

func TestControlModeForms(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		want       FileMode
	}{
		{"octal string", `'660'`, 0o660},
		{"leading zero", `'0600'`, 0o600},
		{"0o prefix", `'0o640'`, 0o640},
		{"number", `std.parseOctal('660')`, 0o660},
		{"zero", `0`, 0},
		{"max", `'777'`, 0o777},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustLoad(t, `{control: {mode: `+tc.mode+`}, proxy: {}, processes: [`+web+`]}`)
			if *cfg.Control.Mode != tc.want {
				t.Errorf("got %o, want %o", *cfg.Control.Mode, tc.want)
			}
		})
	}
}

// TestValidationRules has one row per rule of the spec's validation list
// (and our additions): the offending config, the expected message and fix.
func TestValidationRules(t *testing.T) {
	type row struct {
		name, src, msg, fix string
	}
	p := func(extra string) string { // a config whose second process carries extra
		return `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'x'} + {` + extra + `}]}`
	}
	wp := func(extra string) string { // the proxied process carries extra
		return `{proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'serve', port: 18000} + {` + extra + `}]}`
	}
	rows := []row{
		{"top level not an object", `[]`, "config: must be an object, got an array", "Make the config evaluate to an object"},
		{"proxy missing", `{processes: [` + web + `]}`, "proxy: is required", "Add proxy:"},
		{"processes missing", `{proxy: {}}`, "processes: is required", "Add processes:"},
		{"processes not an array", `{proxy: {}, processes: {}}`, "processes: must be an array, got an object", "Add processes:"},
		{"proxy not an object", `{proxy: 8182, processes: [` + web + `]}`, "proxy: must be an object, got number 8182", "Set proxy to an object"},
		{"no proxied", `{proxy: {}, processes: [{id: 'w', command: 'x'}]}`, "exactly one process must have policy proxied; found none", "policy: 'proxied'"},
		{"two proxied", `{proxy: {}, processes: [` + web + `, {id: 'api', policy: 'proxied', command: 'x', port: 1}]}`, "found 2 (web, api)", "Keep policy: 'proxied' on one process only"},
		{"proxied without port", `{proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'x'}]}`, "the proxied process must define a port", "port: {from: 18182, to: 18299}"},
		{"duplicate id", p("") + `+ {processes+: [{id: 'w', command: 'y'}]}`, `duplicate process id "w"`, `"w" is used 2 times`},
		{"id with hash", `{proxy: {}, processes: [` + web + `, {id: 'w#0', command: 'x'}]}`, `"w#0" must not contain '#'`, `Rename it without '#', e.g. "w-0"`},
		{"id missing", `{proxy: {}, processes: [` + web + `, {command: 'x'}]}`, "processes[1].id: is required", "Give the process an id"},
		{"id empty", `{proxy: {}, processes: [` + web + `, {id: '', command: 'x'}]}`, "processes[1].id: must not be empty", "Give the process an id"},
		{"command missing", `{proxy: {}, processes: [` + web + `, {id: 'w'}]}`, "(w).command: is required", "Set command"},
		{"command wrong type", p(`command: ['a']`), "(w).command: must be a string, got an array", "Set command"},
		{"unknown policy", p(`policy: 'sevice'`), `unknown policy "sevice" (did you mean "service"?)`, "Use one of: proxied, companion, singleton, service"},
		{"port zero", wp(`port: 0`), "port: must be a port number between 1 and 65535, got number 0", "{from: 18182, to: 18299}"},
		{"port too high", `{proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: 70000}]}`, "got number 70000", "Use a port number"},
		{"port fraction", `{proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: 80.5}]}`, "got number 80.5", "Use a port number"},
		{"port range descending", `{proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: {from: 20, to: 10}}]}`, "range 20-10 is not ascending", "Swap them: {from: 10, to: 20}"},
		{"port range without from", `{proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: {to: 20}}]}`, "port: a port range needs from", "{from: n} alone is the port n"},
		{"port string", `{proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: '80'}]}`, `must be a port number or a {from, to} range, got string "80"`, "Use a port number"},
		{"proxy port out of range", `{proxy: {port: 65536}, processes: [` + web + `]}`, "proxy.port: 65536 is not a port number", "between 1 and 65535"},
		{"proxy port negative", `{proxy: {port: -1}, processes: [` + web + `]}`, "proxy.port: must be a port number between 0 and 65535, got number -1", "stable port"},
		{"healthPath without slash", `{proxy: {healthPath: 'ping'}, processes: [` + web + `]}`, `proxy.healthPath: "ping" must start with /`, `Write it as "/ping"`},
		{"hostHealthPath without slash", `{proxy: {hostHealthPath: 'lb'}, processes: [` + web + `]}`, `proxy.hostHealthPath: "lb" must start with /`, `'/_rollbridge/host'`},
		{"hostHealthPath with a query", `{proxy: {hostHealthPath: '/lb?x=1'}, processes: [` + web + `]}`, `proxy.hostHealthPath: "/lb?x=1" must be a path alone`, `no query`},
		{"hostHealthPath with a space", `{proxy: {hostHealthPath: '/l b'}, processes: [` + web + `]}`, `must not contain spaces`, `'' to turn it off`},
		{"hostHealthPath not a string", `{proxy: {hostHealthPath: 1}, processes: [` + web + `]}`, `proxy.hostHealthPath: must be a string`, `'' to turn it off`},
		{"timeout negative", `{proxy: {drainTimeoutMs: -5}, processes: [` + web + `]}`, "proxy.drainTimeoutMs: must be a non-negative number of milliseconds, got number -5", "0 or more"},
		{"bypass token short", `{proxy: {maintenance: {bypassHeader: 'X-B', bypassToken: 'abc'}}, processes: [` + web + `]}`, "proxy.maintenance.bypassToken: must be at least 16 characters", "openssl rand"},
		{"bypass header without token", `{proxy: {maintenance: {bypassCookie: 'b'}}, processes: [` + web + `]}`, "proxy.maintenance.bypassToken: is required with bypassHeader or bypassCookie", "long random string"},
		{"pause timeout over max", `{proxy: {pauseTimeoutMs: 5000, maxPauseTimeoutMs: 1000}, processes: [` + web + `]}`, "proxy.pauseTimeoutMs: 5000 is more than proxy.maxPauseTimeoutMs (1000)", "Lower"},
		{"maxHeld zero", `{proxy: {maxHeld: 0}, processes: [` + web + `]}`, "proxy.maxHeld: must be a positive integer", "4096"},
		{"hold timeout negative", `{proxy: {holdTimeoutMs: -1}, processes: [` + web + `]}`, "proxy.holdTimeoutMs: must be a non-negative number of milliseconds, got number -1", "0 or more"},
		{"health timeout zero", `{proxy: {healthTimeoutMs: 0}, processes: [` + web + `]}`, "proxy.healthTimeoutMs: must be a positive number of milliseconds", "greater than 0"},
		{"control mode not octal", `{control: {mode: '999'}, proxy: {}, processes: [` + web + `]}`, `control.mode: "999" is not an octal mode`, `octal string such as "660"`},
		{"control mode number too big", `{control: {mode: 660}, proxy: {}, processes: [` + web + `]}`, "control.mode: the number 660 is above 511", "write the mode as the string '660' or as std.parseOctal('660')"},
		{"control mode string too big", `{control: {mode: '1000'}, proxy: {}, processes: [` + web + `]}`, "control.mode: 01000 is out of range; a mode is between 0 and 0777", `"660"`},
		{"control mode bool", `{control: {mode: true}, proxy: {}, processes: [` + web + `]}`, "control.mode: must be an octal string or a number, got boolean true", `"660"`},
		{"control owner negative", `{control: {owner: -1}, proxy: {}, processes: [` + web + `]}`, "control.owner: must be a non-negative integer id, got number -1", "user name"},
		{"control group empty", `{control: {group: ''}, proxy: {}, processes: [` + web + `]}`, "control.group: must not be empty", "group name"},
		{"control group object", `{control: {group: {}}, proxy: {}, processes: [` + web + `]}`, "control.group: must be a group name or a non-negative integer id, got an object", "group name"},
		{"control path too long", `{control: {path: '/tmp/` + strings.Repeat("x", 120) + `'}, proxy: {}, processes: [` + web + `]}`, "control.path: is 125 bytes long", "shorter socket path"},
		{"outputLines zero", p(`outputLines: 0`), "(w).outputLines: must be a positive integer, got number 0", "Set outputLines"},
		{"outputLines fraction", p(`outputLines: 1.5`), "(w).outputLines: must be a positive integer, got number 1.5", "Set outputLines"},
		{"retention keep negative", `{releaseRetention: {keep: -1}, proxy: {}, processes: [` + web + `]}`, "releaseRetention.keep: must be a non-negative integer", "Set releaseRetention.keep"},
		{"retention maxAge negative", `{releaseRetention: {maxAgeMs: -1}, proxy: {}, processes: [` + web + `]}`, "releaseRetention.maxAgeMs: must be a non-negative number of milliseconds", "0 or more"},
		{"startDelay negative", wp(`health: {startDelayMs: -1}`), "health.startDelayMs: must be a non-negative number of milliseconds", "0 or more"},
		{"health true", wp(`health: true`), "health: must be an object or false, got true", "false to disable it"},
		{"health path without slash", wp(`health: {path: 'up'}`), `health.path: "up" must start with /`, `Write it as "/up"`},
		{"maxRestarts negative", p(`restart: {maxRestarts: -1}`), "restart.maxRestarts: must be a non-negative integer, got number -1", "remove it for unlimited restarts"},
		{"backoffFactor below 1", p(`restart: {backoffFactor: 0.5}`), "restart.backoffFactor: must be a number between 1 and 1000, got number 0.5", "Set restart.backoffFactor to 1"},
		{"windowMs negative", p(`restart: {windowMs: -1}`), "restart.windowMs: must be a non-negative number of milliseconds", "0 or more"},
		{"maxDelayMs string", p(`restart: {maxDelayMs: '5'}`), `restart.maxDelayMs: must be a non-negative number of milliseconds, got string "5"`, "0 or more"},
		{"memory without limit", p(`memory: {warnBytes: 5}`), "memory.limitBytes: is required when memory is set", "536870912"},
		{"memory limit zero", p(`memory: {limitBytes: 0}`), "memory.limitBytes: must be a positive integer number of bytes", "536870912"},
		{"memory warn negative", p(`memory: {limitBytes: 10, warnBytes: -1}`), "memory.warnBytes: must be a non-negative integer number of bytes", "below limitBytes"},
		{"memory warn above limit", p(`memory: {limitBytes: 10, warnBytes: 20}`), "warnBytes (20) must be below limitBytes (10)", "Set warnBytes below limitBytes"},
		{"memory interval zero", p(`memory: {limitBytes: 10, checkIntervalMs: 0}`), "memory.checkIntervalMs: must be a positive number of milliseconds", "greater than 0"},
		{"replicas zero", p(`replicas: 0`), "(w).replicas: must be a positive integer, got number 0", "Set replicas to 1 or more"},
		{"replicas on proxied", wp(`replicas: 2`), "replicas > 1 is only allowed on a companion; this process is proxied", "port-less companion"},
		{"replicas on singleton", p(`policy: 'singleton', replicas: 2`), "this process is singleton", "port-less companion"},
		{"replicas with port", p(`replicas: 2, port: 9000`), "replicas > 1 is not allowed on a process with a port", "Remove the port"},
		{"lifecycle hook not a string", p(`lifecycle: {quietCommand: 1}`), "lifecycle.quietCommand: must be a string, got number 1", "shell command"},
		{"lifecycle drainTimeout negative", p(`lifecycle: {drainTimeoutMs: -1}`), "lifecycle.drainTimeoutMs: must be a non-negative number of milliseconds", "0 or more"},
		{"drainCommand without timeout", p(`lifecycle: {drainCommand: 'wait'}`), "drainCommand requires a positive drainTimeoutMs", "Set lifecycle.drainTimeoutMs"},
		{"stopCommand with custom signal", p(`stopSignal: 'SIGINT', lifecycle: {stopCommand: 'stop'}`), "stopSignal SIGINT would be ignored", "either lifecycle.stopCommand or stopSignal"},
		{"unknown signal", p(`stopSignal: 'SIGFOO'`), `(w).stopSignal: "SIGFOO" is not a signal name`, "SIGQUIT"},
		{"signal without prefix", p(`stopSignal: 'int'`), `"int" is not a signal name`, `Write it as "SIGINT"`},
		{"nonBlockingDrain not bool", p(`nonBlockingDrain: 'yes'`), `nonBlockingDrain: must be a boolean (true or false), got string "yes"`, "true or false"},
		{"nonBlockingDrain on service", p(`policy: 'service', nonBlockingDrain: true`), "nonBlockingDrain is only allowed on a companion; this process is service", "Remove nonBlockingDrain"},
		{"statePath not a string", `{statePath: 5, proxy: {}, processes: [` + web + `]}`, "statePath: must be a string, got number 5", "Set statePath"},
		{"application empty", `{application: '', proxy: {}, processes: [` + web + `]}`, "application: must not be empty", "Set application"},
		{"env not an object", p(`env: ['A=b']`), "(w).env: must be an object, got an array", "object of strings"},
		{"env value number", p(`env: {PORT: 3000}`), "(w).env.PORT: must be a string, got number 3000", "std.toString"},
		{"legacy includes missing", `{legacyTakeover: {processes: [{name: 'x'}]}, proxy: {}, processes: [` + web + `]}`, "legacyTakeover.processes[0].includes: is required", "command line"},
		{"legacy includes empty", `{legacyTakeover: {processes: [{includes: []}]}, proxy: {}, processes: [` + web + `]}`, "must list at least one string", "command line"},
		{"legacy screens not strings", `{legacyTakeover: {screens: [1]}, proxy: {}, processes: [` + web + `]}`, "legacyTakeover.screens[0]: must be a non-empty string, got number 1", "GNU Screen"},
		{"metrics port missing", `{metrics: {}, proxy: {}, processes: [` + web + `]}`, "metrics.port: is required", "Set metrics.port"},
		{"metrics on the proxy's address", `{metrics: {port: 8182}, proxy: {}, processes: [` + web + `]}`, "metrics.port: is the proxy's address 127.0.0.1:8182", "port of its own"},
		{"accessLog sample above 1", `{accessLog: {sample: 2}, proxy: {}, processes: [` + web + `]}`, "accessLog.sample: must be a number from 0 to 1, got number 2", "every 10th"},
		{"accessLog writing nothing", `{accessLog: {sample: 0}, proxy: {}, processes: [` + web + `]}`, "accessLog: sample: 0 without slowMs writes nothing", "accessLog.slowMs"},
		{"unknown top-level field", `{aplication: 'x', proxy: {}, processes: [` + web + `]}`, `config: unknown field "aplication" (did you mean "application"?)`, `Rename "aplication" to "application"`},
		{"unknown field transposed", `{proxy: {prot: 1}, processes: [` + web + `]}`, `proxy: unknown field "prot" (did you mean "port"?)`, `Rename "prot" to "port"`},
		{"unknown field no suggestion", `{proxy: {}, processes: [` + web + `], banana: 1}`, `config: unknown field "banana"`, "known fields here: accessLog, application, control"},
		{"unknown process field", p(`gracefulStop: 5`), `processes[1] (w): unknown field "gracefulStop" (did you mean "gracefulStopMs"?)`, `Rename "gracefulStop" to "gracefulStopMs"`},
		{"unknown health field", wp(`health: {timeout: 5}`), `health: unknown field "timeout" (did you mean "timeoutMs"?)`, `Rename "timeout" to "timeoutMs"`},
		{"unknown template variable", p(`command: 'run {{relasePath}}'`), "{{relasePath}} is not a known template variable", "Did you mean {{releasePath}}?"},
		{"port template without port", p(`command: 'run --port {{port}}'`), "{{port}} is used but this process has no port", "Add a port to this process"},
		{"ports template unknown id", p(`command: 'run {{ports.wbe}}'`), "{{ports.wbe}} names no process with a port", "Did you mean {{ports.web}}?"},
		{"template in env", p(`env: {X: '{{nope}}'}`), "(w).env.X: {{nope}} is not a known template variable", "template variables"},
		{"value in single quotes", p(`command: "sh -c 'exec run {{releasePath}}'"`), "(w).command: {{releasePath}} stands inside single quotes, where no quoting keeps its value from being read as shell syntax", `"$ROLLBRIDGE_RELEASE_PATH"`},
		{"value in backquotes", p("command: 'run `cat {{env.FILE}}`'"), "{{env.FILE}} stands inside backquotes", `"$FILE"`},
		{"value in a heredoc", p(`command: 'cat <<EOF\n{{revision}}\nEOF'`), "{{revision}} stands in a here-document", `"$ROLLBRIDGE_REVISION"`},
		{"value in eval", p(`command: 'eval run {{proxy.host}}'`), "{{proxy.host}} stands in an eval, let, [[ ]] or (( )) command", "env: {VALUE: '{{proxy.host}}'}"},
		{"application with slash", `{application: 'a/b', proxy: {}, processes: [` + web + `]}`, `application: "a/b" cannot be used`, "letters, digits"},
		{"backoffFactor too big", p(`restart: {backoffFactor: 1001}`), "must be a number between 1 and 1000, got number 1001", "Set restart.backoffFactor"},
		{"milliseconds too big", `{proxy: {drainTimeoutMs: 1e13}, processes: [` + web + `]}`, "proxy.drainTimeoutMs: 10000000000000 is more than the 315360000000 milliseconds (ten years) allowed", "at most 315360000000"},
		{"replicas too many", p(`replicas: 1000000`), "(w).replicas: 1000000 is more than the 1000 replicas allowed", "Set replicas to at most 1000"},
		{"outputLines too many", p(`outputLines: 1e9`), "(w).outputLines: 1000000000 is more than the 100000 lines allowed", "at most 100000"},
		{"trustedProxies not a list", `{proxy: {trustedProxies: '10.0.0.1'}, processes: [` + web + `]}`, `proxy.trustedProxies: must be an array of IP addresses or CIDR prefixes, got string "10.0.0.1"`, "trustedProxies: ['127.0.0.1', '10.0.0.0/8', '::1']"},
		{"trustedProxies bad address", `{proxy: {trustedProxies: ['10.0.0.300']}, processes: [` + web + `]}`, `proxy.trustedProxies[0]: "10.0.0.300" is not an IP address or CIDR prefix`, "Write an IP address such as '10.0.0.1'"},
		{"trustedProxies bad prefix", `{proxy: {trustedProxies: ['::1', '10.0.0.0/33']}, processes: [` + web + `]}`, `proxy.trustedProxies[1]: "10.0.0.0/33" is not a CIDR prefix`, "a CIDR prefix such as '10.0.0.0/8'"},
		{"trustedProxies host bits", `{proxy: {trustedProxies: ['10.1.2.3/8']}, processes: [` + web + `]}`, `"10.1.2.3/8" has bits set beyond its prefix length`, `Write the network as "10.0.0.0/8", or the single address as "10.1.2.3".`},
		{"trustedProxies zone", `{proxy: {trustedProxies: ['fe80::1%eth0']}, processes: [` + web + `]}`, `"fe80::1%eth0" has an IPv6 zone`, "Remove the %zone part."},
		{"trustedProxies number", `{proxy: {trustedProxies: [10]}, processes: [` + web + `]}`, "proxy.trustedProxies[0]: must be a string holding an IP address or CIDR prefix, got number 10", "List the front ends' addresses"},
		{"deployStrategy unknown", p(`deployStrategy: 'rolling'`), `(w).deployStrategy: must be one of: persistent, handoff, got string "rolling"`, `"handoff" (one per release)`},
		{"handoff on a companion", p(`deployStrategy: 'handoff'`), "deployStrategy handoff is only allowed on a service; this process is companion", "make the process a service"},
		{"handoff without port", p(`policy: 'service', deployStrategy: 'handoff'`), "(w).port: a handoff service must define a port range", "port: {from: 7331, to: 7399}"},
		{"handoff single port", p(`policy: 'service', deployStrategy: 'handoff', port: 7331`), "a handoff service must use a multi-port range", "port: {from: 7331, to: 7430}"},
		{"gracefulStopMs other string", p(`gracefulStopMs: 'forever'`), `(w).gracefulStopMs: must be a non-negative number of milliseconds or "indefinite", got string "forever"`, `"indefinite" to never send SIGKILL`},
		{"gracefulStopMs negative", p(`gracefulStopMs: -1`), "(w).gracefulStopMs: must be a non-negative number of milliseconds, got number -1", "0 or more"},
		{"legacy takeover matching nothing", `{legacyTakeover: {forceStopTimeoutMs: 5}, proxy: {}, processes: [` + web + `]}`, "legacyTakeover: must define at least one screen or process matcher", "Set legacyTakeover.screens or legacyTakeover.processes"},
		{"legacy takeover empty lists", `{legacyTakeover: {screens: [], processes: []}, proxy: {}, processes: [` + web + `]}`, "legacyTakeover: must define at least one screen or process matcher", "or remove legacyTakeover"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			_, err := load(t, r.src, nil)
			var issues Issues
			if !errors.As(err, &issues) {
				t.Fatalf("got error %v, want Issues", err)
			}
			for _, is := range issues {
				if strings.Contains(is.Message, r.msg) {
					if !strings.Contains(is.Fix, r.fix) {
						t.Errorf("fix = %q, want it to contain %q", is.Fix, r.fix)
					}
					return
				}
			}
			t.Errorf("no issue contains %q; got:\n%s", r.msg, issueList(issues))
		})
	}
}

func issueList(is Issues) string {
	var b strings.Builder
	for _, i := range is {
		b.WriteString("  " + i.Message + " | Fix: " + i.Fix + "\n")
	}
	return b.String()
}

// TestNoFollowOnIssues: a field that failed its own check does not also
// trip the cross-field rules that read it.
func TestNoFollowOnIssues(t *testing.T) {
	for _, tc := range []struct{ name, src, unwanted string }{
		{"missing ids", `{proxy: {}, processes: [` + web + `, {command: 'a'}, {command: 'b'}]}`, "duplicate process id"},
		{"memory without limit", `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'x', memory: {warnBytes: 100}}]}`, "must be below limitBytes"},
		{"bad port and {{port}}", `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'x {{port}}', port: 'x'}]}`, "{{port}} is used"},
		{"misspelled policy", `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'x', policy: 'singelton', replicas: 2}]}`, "only allowed on a companion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.src, nil)
			var issues Issues
			if !errors.As(err, &issues) {
				t.Fatalf("got %v", err)
			}
			for _, is := range issues {
				if strings.Contains(is.Message, tc.unwanted) {
					t.Errorf("follow-on issue %q in:\n%s", is.Message, issueList(issues))
				}
			}
		})
	}
}

// TestNodeForms: values the Node original accepts keep its meaning here.
func TestNodeForms(t *testing.T) {
	t.Run("health null disables the check", func(t *testing.T) {
		cfg := mustLoad(t, `{proxy: {}, processes: [`+web+` + {health: null}]}`)
		if p := cfg.Proxied(); p.Health == nil || !p.Health.Disabled || p.HealthEnabled() {
			t.Errorf("health = %+v, want disabled", p.Health)
		}
		out, err := json.Marshal(cfg.Proxied())
		if err != nil || !strings.Contains(string(out), `"health":false`) {
			t.Errorf("JSON form %s (%v), want health false", out, err)
		}
	})
	t.Run("port from alone is that port", func(t *testing.T) {
		cfg := mustLoad(t, `{proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: {from: 18100}}]}`)
		if got := *cfg.Proxied().Port; got != (PortRange{From: 18100, To: 18100}) {
			t.Errorf("port = %+v, want 18100-18100", got)
		}
	})
	t.Run("handoff service", func(t *testing.T) {
		cfg := mustLoad(t, `{proxy: {}, processes: [`+web+`, {id: 'jobs', policy: 'service', deployStrategy: 'handoff', command: 'x', port: {from: 7331, to: 7399}},
			{id: 'svc', policy: 'service', command: 'y', deployStrategy: null}]}`)
		if !cfg.ProcessByID("jobs").IsHandoff() || cfg.ProcessByID("svc").IsHandoff() || cfg.ProcessByID("svc").DeployStrategy != Persistent || cfg.Proxied().DeployStrategy != Persistent {
			t.Errorf("strategies: %q %q %q", cfg.ProcessByID("jobs").DeployStrategy, cfg.ProcessByID("svc").DeployStrategy, cfg.Proxied().DeployStrategy)
		}
	})
	t.Run("gracefulStopMs indefinite", func(t *testing.T) {
		cfg := mustLoad(t, `{proxy: {}, processes: [`+web+`, {id: 'job', command: 'x', gracefulStopMs: 'indefinite'}]}`)
		job := cfg.ProcessByID("job")
		if !job.GracefulStopIndefinite() || job.GracefulStopMs != Indefinite || cfg.Proxied().GracefulStopIndefinite() {
			t.Errorf("gracefulStopMs = %d / %d", job.GracefulStopMs, cfg.Proxied().GracefulStopMs)
		}
		out, err := json.Marshal(job)
		if err != nil || !strings.Contains(string(out), `"gracefulStopMs":"indefinite"`) {
			t.Errorf("JSON form %s (%v)", out, err)
		}
	})
	t.Run("singleton port in another process's template", func(t *testing.T) {
		cfg := mustLoad(t, `{proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'x --cron {{ports.cron}}', port: 18000},
			{id: 'cron', policy: 'singleton', command: 'c --port {{port}}', port: 9000}]}`)
		if cfg.ProcessByID("cron").Port == nil {
			t.Error("singleton port lost")
		}
	})
}

func TestHealthOnlyDefaultedForProxied(t *testing.T) {
	cfg := mustLoad(t, `{proxy: {}, processes: [`+web+`, {id: 'w', command: 'x'}]}`)
	if cfg.ProcessByID("w").Health != nil || cfg.Proxied().Health == nil {
		t.Errorf("health: worker %+v, web %+v", cfg.ProcessByID("w").Health, cfg.Proxied().Health)
	}
}

func TestDefaultApplicationMustBeUsable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(path, []byte(`{proxy: {}, processes: [`+web+`]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, nil)
	if err == nil || !strings.Contains(err.Error(), `config directory's name "my app"`) {
		t.Errorf("got %v", err)
	}
}

func TestAllIssuesReportedAtOnce(t *testing.T) {
	_, err := load(t, `{proxy: {}, processes: [{id: 'web', command: 'a'}, {id: 'web', command: 'b', replicas: 0}], statePath: 1}`, nil)
	var issues Issues
	if !errors.As(err, &issues) {
		t.Fatalf("got %v", err)
	}
	want := []string{"found none", `duplicate process id "web"`, "replicas: must be a positive integer", "statePath: must be a string"}
	for _, w := range want {
		found := false
		for _, is := range issues {
			found = found || strings.Contains(is.Message, w)
		}
		if !found {
			t.Errorf("missing issue %q in:\n%s", w, issueList(issues))
		}
	}
	for _, is := range issues {
		if is.Fix == "" {
			t.Errorf("issue %q has no fix", is.Message)
		}
	}
}

func TestExtVarEnv(t *testing.T) {
	src := `local env = std.extVar('env');
	{application: env.APP_NAME, proxy: {port: std.parseInt(std.get(env, 'PORT', '8182'))}, processes: [` + web + `]}`
	cfg, err := load(t, src, map[string]string{"APP_NAME": "shop", "PORT": "9100"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Application != "shop" || cfg.Proxy.Port != 9100 {
		t.Errorf("got application %q port %d", cfg.Application, cfg.Proxy.Port)
	}
	cfg, err = load(t, src, map[string]string{"APP_NAME": "other"})
	if err != nil || cfg.Proxy.Port != 8182 || cfg.Application != "other" {
		t.Errorf("defaults from env: %v %+v", err, cfg)
	}
}

func TestTopLevelFunction(t *testing.T) {
	cfg := mustLoad(t, `function(name='fn-app', port=9300) {application: name, proxy: {port: port}, processes: [`+web+`]}`)
	if cfg.Application != "fn-app" || cfg.Proxy.Port != 9300 {
		t.Errorf("got %q %d", cfg.Application, cfg.Proxy.Port)
	}
	_, err := load(t, `function(name) {application: name, proxy: {}, processes: [`+web+`]}`, nil)
	var ee *EvalError
	if !errors.As(err, &ee) || !strings.Contains(ee.Message, "name") {
		t.Errorf("a parameter without default: got %v, want an EvalError naming it", err)
	}
}

func TestImportRelativeToFile(t *testing.T) {
	path := writeConfig(t, `local lib = import 'lib/shared.libsonnet';
	{proxy: {}, processes: [lib.web(18500)], application: importstr 'name.txt'}`)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	lib := `{web(port):: {id: 'web', policy: 'proxied', command: 'serve {{port}}', port: port}}`
	if err := os.WriteFile(filepath.Join(dir, "lib", "shared.libsonnet"), []byte(lib), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "name.txt"), []byte("imported"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Load from another working directory: imports must still resolve
	// relative to the config file.
	t.Chdir(t.TempDir())
	cfg, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Application != "imported" || cfg.Proxied().Port.From != 18500 {
		t.Errorf("got %q %+v", cfg.Application, cfg.Proxied().Port)
	}
}

func TestJsonnetErrorsCarryPosition(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"syntax", "{\n  proxy: {,\n}", "rollbridge.jsonnet:2:"},
		{"runtime", "{\n proxy: {port: std.extVar('env').NOPE},\n processes: []}", "rollbridge.jsonnet:2:"},
		{"error call", "{\n\n  x: error 'custom failure'}", "custom failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.src, nil)
			var ee *EvalError
			if !errors.As(err, &ee) {
				t.Fatalf("got %v, want *EvalError", err)
			}
			if !strings.Contains(ee.Message, tc.want) {
				t.Errorf("message %q lacks %q", ee.Message, tc.want)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	t.Chdir(t.TempDir())
	_, err := Load("", nil)
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Explicit || !strings.Contains(err.Error(), "rollbridge.jsonnet") || !strings.Contains(err.Error(), "-c/--config") {
		t.Errorf("default path: got %v", err)
	}
	_, err = Load("nope/x.jsonnet", nil)
	if !errors.As(err, &nf) || !nf.Explicit || !strings.Contains(err.Error(), "nope/x.jsonnet") {
		t.Errorf("explicit path: got %v", err)
	}
}

func TestDefaultFileInWorkingDirectory(t *testing.T) {
	path := writeConfig(t, `{proxy: {}, processes: [`+web+`]}`)
	t.Chdir(filepath.Dir(path))
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path {
		t.Errorf("path = %q, want %q", cfg.Path, path)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	cfg := mustLoad(t, `{control: {mode: '640', owner: 'root', group: 0}, proxy: {}, legacyTakeover: {processes: [{includes: ['a']}]},
		processes: [`+web+`, {id: 'w', command: 'x', restart: {maxRestarts: 3}, memory: {limitBytes: 5}, health: false, lifecycle: {quietCommand: 'q'}}]}`)
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Decode(data, cfg.Path)
	if err != nil {
		t.Fatalf("normalised JSON does not load back: %v\n%s", err, data)
	}
	data2, _ := json.Marshal(again)
	if string(data) != string(data2) {
		t.Errorf("round trip changed the config:\n%s\n%s", data, data2)
	}
}
