package config

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Decode turns an evaluated config (JSON text) into a normalised Config:
// walk the JSON, taking each field that is given and valid (the known keys
// of each object are the fields of its struct in config.go), then
// applyDefaults, then the rules that span fields. configPath is used for the
// application default (basename of its directory) and stored in
// Config.Path. It returns Issues when anything is wrong; the returned Config
// is then only partially filled and must not be used.
func Decode(data []byte, configPath string) (*Config, error) {
	var root any
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return nil, Issues{{Message: "config is not valid JSON: " + err.Error(), Fix: "Make the config evaluate to one JSON object."}}
	}
	if dec.More() {
		return nil, Issues{{Message: "config holds more than one JSON value", Fix: "Make the config evaluate to one JSON object."}}
	}
	c := &collector{set: fieldSet{}}
	cfg, ok := decodeConfig(c, root, configPath)
	if ok {
		applyDefaults(cfg, c.set)
		validate(c, cfg)
	}
	if len(c.issues) > 0 {
		return cfg, c.issues
	}
	return cfg, nil
}

// obj is a JSON object being walked; every accessor records type errors.
type obj struct {
	c    *collector
	path string
	m    map[string]any
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// object checks that v is an object with only known keys.
func (c *collector) object(path string, v any, known []string, fix string) (obj, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		c.add(path, fix, "must be an object, got %s", describe(v))
		return obj{}, false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if containsStr(known, k) {
			continue
		}
		fixText := fmt.Sprintf("Remove %q; known fields here: %s.", k, strings.Join(known, ", "))
		msg := fmt.Sprintf("unknown field %q", k)
		if s := suggest(k, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
			fixText = fmt.Sprintf("Rename %q to %q.", k, s)
		}
		c.add(path, fixText, "%s", msg)
	}
	return obj{c: c, path: path, m: m}, true
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case json.Number:
		return "number " + x.String()
	case string:
		return fmt.Sprintf("string %q", truncate(x, 40))
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func (o obj) has(k string) bool {
	if o.m == nil {
		return false
	}
	v, ok := o.m[k]
	return ok && v != nil
}

func (o obj) str(k, fix string) (string, bool) {
	if !o.has(k) {
		return "", false
	}
	s, ok := o.m[k].(string)
	if !ok {
		o.c.add(join(o.path, k), fix, "must be a string, got %s", describe(o.m[k]))
		return "", false
	}
	return s, true
}

func (o obj) nonEmptyStr(k, fix string) (string, bool) {
	s, ok := o.str(k, fix)
	if ok && strings.TrimSpace(s) == "" {
		o.c.add(join(o.path, k), fix, "must not be empty")
		return "", false
	}
	return s, ok
}

func (o obj) boolean(k, fix string) (bool, bool) {
	if !o.has(k) {
		return false, false
	}
	b, ok := o.m[k].(bool)
	if !ok {
		o.c.add(join(o.path, k), fix, "must be a boolean (true or false), got %s", describe(o.m[k]))
	}
	return b, ok
}

func (o obj) number(k string) (float64, string, bool) {
	n, ok := o.m[k].(json.Number)
	if !ok {
		return 0, "", false
	}
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) {
		return 0, n.String(), false
	}
	return f, n.String(), true
}

// integer reads an integer >= minimum. what describes the expectation in the
// message ("a positive integer", "a non-negative number of milliseconds").
func (o obj) integer(k string, minimum int64, what, fix string) (int64, bool) {
	if !o.has(k) {
		return 0, false
	}
	f, _, ok := o.number(k)
	if !ok || f != math.Trunc(f) || f < float64(minimum) || f > 1<<53 {
		o.c.add(join(o.path, k), fix, "must be %s, got %s", what, describe(o.m[k]))
		return 0, false
	}
	return int64(f), true
}

// Upper bounds: beyond them a value is a mistake, and some would overflow
// (time.Duration holds ~292 years) or exhaust the machine.
const (
	maxMs          = 10 * 365 * 24 * 3600 * 1000 // ten years
	maxReplicas    = 1000
	maxOutputLines = 100000
	maxKeep        = 10000
)

// ms reads a non-negative millisecond count. Fractions are rejected: no
// timer here has sub-millisecond meaning, and a fraction is usually a unit mix-up.
func (o obj) ms(k string, positive bool) (int64, bool) {
	var v int64
	var ok bool
	if positive {
		v, ok = o.integer(k, 1, "a positive number of milliseconds", fmt.Sprintf("Set %s to a whole number of milliseconds greater than 0.", k))
	} else {
		v, ok = o.integer(k, 0, "a non-negative number of milliseconds", fmt.Sprintf("Set %s to a whole number of milliseconds, 0 or more.", k))
	}
	return o.atMost(k, v, ok, maxMs, "milliseconds (ten years)")
}

// atMost rejects v above limit.
func (o obj) atMost(k string, v int64, ok bool, limit int64, unit string) (int64, bool) {
	if ok && v > limit {
		o.c.add(join(o.path, k), fmt.Sprintf("Set %s to at most %d.", k, limit), "%d is more than the %d %s allowed", v, limit, unit)
		return 0, false
	}
	return v, ok
}

func (o obj) stringList(k, fix string) ([]string, bool) {
	if !o.has(k) {
		return nil, false
	}
	arr, ok := o.m[k].([]any)
	if !ok {
		o.c.add(join(o.path, k), fix, "must be an array of strings, got %s", describe(o.m[k]))
		return nil, false
	}
	out := make([]string, 0, len(arr))
	good := true
	for i, v := range arr {
		s, ok := v.(string)
		if !ok || s == "" {
			o.c.add(fmt.Sprintf("%s[%d]", join(o.path, k), i), fix, "must be a non-empty string, got %s", describe(v))
			good = false
			continue
		}
		out = append(out, s)
	}
	return out, good
}

func decodeConfig(c *collector, root any, configPath string) (*Config, bool) {
	cfg := &Config{Path: configPath}
	top, ok := c.object("", root, fieldsOf[Config](), "Make the config evaluate to an object such as {proxy: {...}, processes: [...]}.")
	if !ok {
		return cfg, false
	}
	if app, ok := top.nonEmptyStr("application", "Set application to your app's name, e.g. application: 'shop'."); ok {
		take(c, &cfg.Application, app)
		if !validAppName(app) {
			c.add("application", "Use letters, digits, '.', '_' and '-' only, e.g. 'ticket-server'.",
				"%q cannot be used: it names the control socket (/run/rollbridge/<application>.sock) and the systemd unit", app)
		}
	} else if top.has("application") {
		// A rejected name is not replaced by the directory's: the issue
		// already says what to write, and the default would need its own.
		c.set[&cfg.Application] = true
	} else if name := defaultApplication(configPath); !validAppName(name) {
		c.add("application", "Set application explicitly, e.g. application: 'ticket-server'.",
			"not set, and the config directory's name %q cannot be used as one (letters, digits, '.', '_' and '-' only)", name)
	}
	if sp, ok := top.nonEmptyStr("statePath", "Set statePath to a file path such as '/var/lib/rollbridge/app.state.json', or remove it."); ok {
		take(c, &cfg.StatePath, sp)
	}
	if u, ok := top.nonEmptyStr("user", "Set user to the name (or uid) of the user the processes run as, e.g. 'app', or remove it to run them as the daemon's user."); ok {
		take(c, &cfg.User, u)
	}
	if g, ok := top.nonEmptyStr("group", "Set group to the name (or gid) of the group the processes run as, e.g. 'app', or remove it."); ok {
		take(c, &cfg.Group, g)
	}
	if top.has("systemd") {
		if u, ok := decodeUnitSettings(c, "systemd", top.m["systemd"]); ok {
			take(c, &cfg.Systemd, u)
		}
	}
	if rt, ok := top.str("runtime", "Set runtime to 'auto', 'systemd' or 'exec'."); ok {
		switch Runtime(rt) {
		case RuntimeAuto, RuntimeSystemd, RuntimeExec:
			take(c, &cfg.Runtime, Runtime(rt))
		default:
			c.add("runtime", "Set runtime to 'auto' (systemd units when run as a systemd service), 'systemd' or 'exec'.", "%q is not a runtime", rt)
		}
	}
	if b, ok := top.boolean("restoreOnStart", "Set restoreOnStart to true or false."); ok {
		take(c, &cfg.RestoreOnStart, b)
	}
	decodeProxy(c, top, cfg)
	decodeControl(c, top, cfg)
	decodeRetention(c, top, cfg)
	decodeLegacy(c, top, cfg)
	decodeMetrics(c, top, cfg)
	decodeAccessLog(c, top, cfg)
	decodeProcesses(c, top, cfg)
	return cfg, true
}

// validAppName keeps application usable in a socket path and a unit name.
func validAppName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return false
		}
	}
	return true
}

func decodeControl(c *collector, top obj, cfg *Config) {
	if !top.has("control") {
		return
	}
	o, ok := c.object("control", top.m["control"], fieldsOf[Control](), "Set control to an object such as {path: '/run/rollbridge/app.sock'}.")
	if !ok {
		return
	}
	if p, ok := o.nonEmptyStr("path", "Set control.path to a Unix socket path such as '/run/rollbridge/app.sock'."); ok {
		take(c, &cfg.Control.Path, p)
		checkSocketPath(c, p)
	}
	cfg.Control.Mode = decodeMode(o)
	cfg.Control.Owner = decodeIDOrName(o, "owner", "user")
	cfg.Control.Group = decodeIDOrName(o, "group", "group")
}

// checkSocketPath rejects a control.path that does not fit sun_path, which
// holds 108 bytes including the terminating NUL.
func checkSocketPath(c *collector, path string) {
	if len(path) > 107 {
		c.add("control.path", "Use a shorter socket path, e.g. under /run/rollbridge.", "is %d bytes long; a Unix socket path may be at most 107", len(path))
	}
}

func decodeMode(o obj) *FileMode {
	if !o.has("mode") {
		return nil
	}
	const fix = `Set control.mode to an octal string such as "660" (or a number such as std.parseOctal("660")).`
	var mode uint64
	switch v := o.m["mode"].(type) {
	case string:
		s := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(v), "0o"), "0O")
		m, err := strconv.ParseUint(s, 8, 32)
		if err != nil || s == "" {
			o.c.add("control.mode", fix, "%q is not an octal mode", v)
			return nil
		}
		mode = m
	case json.Number:
		f, _, ok := o.number("mode")
		if !ok || f != math.Trunc(f) || f < 0 {
			o.c.add("control.mode", fix, "must be a non-negative integer, got %s", describe(v))
			return nil
		}
		mode = uint64(f)
	default:
		o.c.add("control.mode", fix, "must be an octal string or a number, got %s", describe(v))
		return nil
	}
	if mode > 0o777 {
		if _, isNum := o.m["mode"].(json.Number); isNum {
			o.c.add("control.mode", fmt.Sprintf("Jsonnet has no octal literals: write the mode as the string '%d' or as std.parseOctal('%d').", mode, mode),
				"the number %d is above 511 (0777); a number is the mode's numeric value, not octal digits", mode)
			return nil
		}
		o.c.add("control.mode", fix, "%#o is out of range; a mode is between 0 and 0777", mode)
		return nil
	}
	m := FileMode(mode)
	return &m
}

func decodeIDOrName(o obj, key, kind string) *IDOrName {
	if !o.has(key) {
		return nil
	}
	fix := fmt.Sprintf("Set control.%s to a %s name such as 'deploy' or a numeric id such as 1000.", key, kind)
	switch v := o.m[key].(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			o.c.add("control."+key, fix, "must not be empty")
			return nil
		}
		return &IDOrName{Name: v}
	case json.Number:
		id, ok := o.integer(key, 0, "a non-negative integer id", fix)
		if !ok {
			return nil
		}
		return &IDOrName{ID: int(id)}
	default:
		o.c.add("control."+key, fix, "must be a %s name or a non-negative integer id, got %s", kind, describe(v))
		return nil
	}
}

func decodeProxy(c *collector, top obj, cfg *Config) {
	p := &cfg.Proxy
	if !top.has("proxy") {
		c.add("proxy", "Add proxy: {host: '127.0.0.1', port: 8182} — the stable address your front end points at.", "is required")
		return
	}
	o, ok := c.object("proxy", top.m["proxy"], fieldsOf[Proxy](), "Set proxy to an object such as {host: '127.0.0.1', port: 8182}.")
	if !ok {
		return
	}
	if h, ok := o.nonEmptyStr("host", "Set proxy.host to an interface address such as '127.0.0.1' or '0.0.0.0'."); ok {
		take(c, &p.Host, h)
	}
	// 0 is accepted for the stable port: the daemon then binds an ephemeral
	// port and reports it in status, which tests and local experiments use.
	if n, ok := o.integer("port", 0, "a port number between 0 and 65535", "Set proxy.port to the stable port your front end proxies to, e.g. 8182."); ok {
		if n > 65535 {
			c.add("proxy.port", "Set proxy.port to a port number between 1 and 65535.", "%d is not a port number", n)
		} else {
			take(c, &p.Port, int(n))
		}
	}
	if h, ok := o.nonEmptyStr("upstreamHost", "Set proxy.upstreamHost to the address release processes listen on, e.g. '127.0.0.1'."); ok {
		take(c, &p.UpstreamHost, h)
	}
	if hp, ok := o.nonEmptyStr("healthPath", "Set proxy.healthPath to an HTTP path such as '/ping'."); ok {
		if !strings.HasPrefix(hp, "/") {
			c.add("proxy.healthPath", fmt.Sprintf("Write it as %q.", "/"+hp), "%q must start with /", hp)
		} else {
			take(c, &p.HealthPath, hp)
		}
	}
	if v, ok := o.ms("healthTimeoutMs", true); ok {
		take(c, &p.HealthTimeoutMs, v)
	}
	if v, ok := o.ms("drainTimeoutMs", false); ok {
		take(c, &p.DrainTimeoutMs, v)
	}
	if v, ok := o.ms("forceStopTimeoutMs", false); ok {
		take(c, &p.ForceStopTimeoutMs, v)
	}
	if v, ok := o.ms("holdTimeoutMs", false); ok {
		take(c, &p.HoldTimeoutMs, v)
	}
	if v, ok := o.ms("upstreamTimeoutMs", false); ok {
		take(c, &p.UpstreamTimeoutMs, v)
	}
	const cookieFix = "Set proxy.canaryCookie to a name of letters, digits, '_', '-' or '.' (at most 64), or to '' to hash the client address instead."
	if name, ok := o.str("canaryCookie", cookieFix); ok {
		if !validCookieName(name) {
			c.add("proxy.canaryCookie", cookieFix, "%q is not a cookie name", name)
		} else {
			take(c, &p.CanaryCookie, name)
		}
	}
	if hp, ok := o.str("hostHealthPath", "Set proxy.hostHealthPath to a path such as '/_rollbridge/host', or '' to turn it off."); ok {
		if problem := hostHealthPathProblem(hp); problem != "" {
			c.add("proxy.hostHealthPath", "Set it to a plain path such as '/_rollbridge/host' (no query, no spaces), or '' to turn it off.", "%q %s", hp, problem)
		} else {
			take(c, &p.HostHealthPath, hp)
		}
	}
	if o.has("trustedProxies") {
		if list, ok := decodeTrustedProxies(c, "proxy.trustedProxies", o.m["trustedProxies"]); ok {
			take(c, &p.TrustedProxies, list)
		}
	}
	decodeTraffic(c, o, p)
}

// hostHealthPath problem says what is wrong with a proxy.hostHealthPath,
// or "". The proxy compares it with the request's decoded path, so a
// query, a fragment or bytes no request path carries would never match.
func hostHealthPathProblem(hp string) string {
	switch {
	case hp == "":
		return ""
	case !strings.HasPrefix(hp, "/"):
		return "must start with /"
	case len(hp) > 1024:
		return "is longer than 1024 bytes"
	case strings.ContainsAny(hp, "?#"):
		return "must be a path alone, without ? or #"
	}
	for _, r := range hp {
		if r <= ' ' || r == 0x7f {
			return "must not contain spaces or control characters"
		}
	}
	return ""
}

// decodeTraffic reads the traffic-control extensions of proxy: the hold's
// bounds, pause timeouts and maintenance.
func decodeTraffic(c *collector, o obj, p *Proxy) {
	if n, ok := o.integer("maxHeld", 1, "a positive integer", "Set proxy.maxHeld to how many requests may wait at once, e.g. 4096."); ok {
		if n, ok = o.atMost("maxHeld", n, ok, 1<<20, "requests"); ok {
			take(c, &p.MaxHeld, int(n))
		}
	}
	if n, ok := o.integer("holdRelease", 1, "a positive integer", "Set proxy.holdRelease to how many held requests go at once, e.g. 32."); ok {
		if n, ok = o.atMost("holdRelease", n, ok, 1<<16, "requests"); ok {
			take(c, &p.HoldRelease, int(n))
		}
	}
	if b, ok := o.boolean("holdBeforeFirstDeploy", "Set proxy.holdBeforeFirstDeploy to true or false."); ok {
		take(c, &p.HoldBeforeFirstDeploy, b)
	}
	if v, ok := o.ms("pauseTimeoutMs", true); ok {
		take(c, &p.PauseTimeoutMs, v)
	}
	if v, ok := o.ms("maxPauseTimeoutMs", true); ok {
		take(c, &p.MaxPauseTimeoutMs, v)
	}
	if c.set[&p.PauseTimeoutMs] && c.set[&p.MaxPauseTimeoutMs] && p.PauseTimeoutMs > p.MaxPauseTimeoutMs {
		c.add("proxy.pauseTimeoutMs", "Lower proxy.pauseTimeoutMs or raise proxy.maxPauseTimeoutMs.",
			"%d is more than proxy.maxPauseTimeoutMs (%d)", p.PauseTimeoutMs, p.MaxPauseTimeoutMs)
	}
	if !o.has("maintenance") {
		return
	}
	m, ok := c.object("proxy.maintenance", o.m["maintenance"], fieldsOf[Maintenance](),
		"Set proxy.maintenance to an object such as {bypassHeader: 'X-Maintenance-Bypass', bypassToken: std.extVar('env').BYPASS_TOKEN}.")
	if !ok {
		return
	}
	mt := &p.Maintenance
	if v, ok := m.ms("retryAfterMs", true); ok {
		take(c, &mt.RetryAfterMs, v)
	}
	// "" means unset in each of these (the normalised config writes it).
	if s, ok := m.str("bypassHeader", "Set proxy.maintenance.bypassHeader to a header name such as 'X-Maintenance-Bypass'."); ok {
		take(c, &mt.BypassHeader, s)
	}
	if s, ok := m.str("bypassCookie", "Set proxy.maintenance.bypassCookie to a cookie name such as 'maintenance_bypass'."); ok {
		take(c, &mt.BypassCookie, s)
	}
	if s, ok := m.str("bypassToken", "Set proxy.maintenance.bypassToken to a long random string."); ok {
		if s != "" && len(s) < minBypassToken {
			m.c.add("proxy.maintenance.bypassToken", "Use a long random string, e.g. the output of `openssl rand -hex 16`.",
				"must be at least %d characters: a short token can be guessed", minBypassToken)
		} else {
			take(c, &mt.BypassToken, s)
		}
	}
	if (mt.BypassHeader != "" || mt.BypassCookie != "") && mt.BypassToken == "" && !m.has("bypassToken") {
		c.add("proxy.maintenance.bypassToken", "Add bypassToken: a long random string that the header or cookie must carry.",
			"is required with bypassHeader or bypassCookie")
	}
	if m.has("bypassClients") {
		if list, ok := decodeTrustedProxies(c, "proxy.maintenance.bypassClients", m.m["bypassClients"]); ok {
			take(c, &mt.BypassClients, list)
		}
	}
}

// minBypassToken is the shortest maintenance bypass token accepted.
const minBypassToken = 16

// decodeTrustedProxies reads a list of IP addresses and CIDR prefixes. A
// single address becomes a one-address prefix; an IPv4-mapped IPv6 one
// becomes IPv4, since peers are compared as the proxy sees them.
func decodeTrustedProxies(c *collector, path string, v any) ([]netip.Prefix, bool) {
	const fix = "List the front ends' addresses or networks, e.g. trustedProxies: ['127.0.0.1', '10.0.0.0/8', '::1']."
	arr, ok := v.([]any)
	if !ok {
		c.add(path, fix, "must be an array of IP addresses or CIDR prefixes, got %s", describe(v))
		return nil, false
	}
	out := make([]netip.Prefix, 0, len(arr))
	good := true
	for i, x := range arr {
		where := fmt.Sprintf("%s[%d]", path, i)
		s, ok := x.(string)
		if !ok {
			c.add(where, fix, "must be a string holding an IP address or CIDR prefix, got %s", describe(x))
			good = false
			continue
		}
		p, problem, fix := parsePrefix(s)
		if problem != "" {
			c.add(where, fix, "%q %s", truncate(s, 60), problem)
			good = false
			continue
		}
		out = append(out, p)
	}
	return out, good
}

// parsePrefix reads one trustedProxies entry. problem is "" when s is good;
// otherwise it says what is wrong, and fix what to write instead.
func parsePrefix(s string) (p netip.Prefix, problem, fix string) {
	const generalFix = "Write an IP address such as '10.0.0.1' or '::1', or a CIDR prefix such as '10.0.0.0/8'."
	if strings.Contains(s, "%") {
		return netip.Prefix{}, "has an IPv6 zone; zones cannot be matched", "Remove the %zone part."
	}
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, "is not a CIDR prefix", generalFix
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, "is not an IP address or CIDR prefix", generalFix
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p != p.Masked() {
		return netip.Prefix{}, "has bits set beyond its prefix length",
			fmt.Sprintf("Write the network as %q, or the single address as %q.", p.Masked().String(), p.Addr().String())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, "", ""
}

func decodeRetention(c *collector, top obj, cfg *Config) {
	if !top.has("releaseRetention") {
		return
	}
	o, ok := c.object("releaseRetention", top.m["releaseRetention"], fieldsOf[ReleaseRetention](), "Set releaseRetention to an object such as {keep: 5, maxAgeMs: 86400000}.")
	if !ok {
		return
	}
	if n, ok := o.integer("keep", 0, "a non-negative integer", "Set releaseRetention.keep to how many stopped releases to remember, e.g. 10."); ok {
		if n, ok = o.atMost("keep", n, ok, maxKeep, "releases"); ok {
			take(c, &cfg.ReleaseRetention.Keep, int(n))
		}
	}
	if n, ok := o.ms("maxAgeMs", false); ok {
		take(c, &cfg.ReleaseRetention.MaxAgeMs, n)
	}
}

func decodeLegacy(c *collector, top obj, cfg *Config) {
	if !top.has("legacyTakeover") {
		return
	}
	o, ok := c.object("legacyTakeover", top.m["legacyTakeover"], fieldsOf[LegacyTakeover](), "Set legacyTakeover to an object such as {screens: ['app'], processes: [{includes: ['server.js']}]}.")
	if !ok {
		return
	}
	lt := &LegacyTakeover{}
	cfg.LegacyTakeover = lt
	if s, ok := o.stringList("screens", "List GNU Screen session names, e.g. screens: ['ticket-server']."); ok {
		take(c, &lt.Screens, s)
	}
	if v, ok := o.ms("forceStopTimeoutMs", false); ok {
		take(c, &lt.ForceStopTimeoutMs, v)
	}
	if !o.has("processes") {
		return
	}
	arr, ok := o.m["processes"].([]any)
	if !ok {
		c.add("legacyTakeover.processes", "Set it to a list such as [{name: 'legacy web', includes: ['server.js', '--port 8082']}].", "must be an array, got %s", describe(o.m["processes"]))
		return
	}
	// Full capacity up front: entries are decoded in place, and the field
	// set records their addresses, which an append must not move.
	take(c, &lt.Processes, make([]LegacyProcess, 0, len(arr)))
	for i, v := range arr {
		path := fmt.Sprintf("legacyTakeover.processes[%d]", i)
		po, ok := c.object(path, v, fieldsOf[LegacyProcess](), "Write each entry as {name: 'legacy web', includes: ['server.js']}.")
		if !ok {
			continue
		}
		lt.Processes = append(lt.Processes, LegacyProcess{})
		lp := &lt.Processes[len(lt.Processes)-1]
		if n, ok := po.nonEmptyStr("name", "Give the entry a label such as 'legacy web'."); ok {
			take(c, &lp.Name, n)
		}
		const incFix = "List strings that all appear in the legacy process's command line, e.g. includes: ['/srv/app/', 'server.js']."
		if !po.has("includes") {
			c.add(path+".includes", incFix, "is required")
		} else if inc, ok := po.stringList("includes", incFix); ok {
			if len(inc) == 0 {
				c.add(path+".includes", incFix, "must list at least one string (an empty list would match every process)")
			}
			take(c, &lp.Includes, inc)
		}
	}
}

func decodeProcesses(c *collector, top obj, cfg *Config) {
	const fix = "Add processes: [{id: 'web', policy: 'proxied', command: '...', port: {from: 18182, to: 18299}}]."
	if !top.has("processes") {
		c.add("processes", fix, "is required")
		return
	}
	arr, ok := top.m["processes"].([]any)
	if !ok {
		c.add("processes", fix, "must be an array, got %s", describe(top.m["processes"]))
		return
	}
	// Decoded in place: the field set records addresses inside the slice.
	cfg.Processes = make([]Process, len(arr))
	for i, v := range arr {
		decodeProcess(c, i, v, &cfg.Processes[i])
	}
}

func decodeProcess(c *collector, i int, v any, p *Process) {
	path := processPath(i, "")
	if m, ok := v.(map[string]any); ok {
		if id, ok := m["id"].(string); ok && id != "" {
			path = processPath(i, id) // label every issue of this process with its id
		}
	}
	o, ok := c.object(path, v, fieldsOf[Process](), "Write each process as {id: 'web', policy: 'proxied', command: '...'}.")
	if !ok {
		return
	}
	if id, ok := o.nonEmptyStr("id", "Give the process an id such as 'web' or 'worker'."); ok {
		take(c, &p.ID, id)
	} else if !o.has("id") {
		c.add(path+".id", "Give the process an id such as 'web' or 'worker'.", "is required")
	}
	if pol, ok := o.str("policy", "Set policy to one of proxied, companion, singleton, service."); ok {
		take(c, &p.Policy, Policy(pol)) // kept even when unknown: the rules that read it check c.failed first
		if !containsPolicy(pol) {
			names := make([]string, len(Policies))
			for i, x := range Policies {
				names[i] = string(x)
			}
			msg := fmt.Sprintf("unknown policy %q", pol)
			if s := suggest(pol, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			c.add(join(path, "policy"), "Use one of: proxied, companion, singleton, service.", "%s", msg)
		}
	}
	if ds, ok := o.str("deployStrategy", `Set deployStrategy to "persistent" or "handoff".`); ok {
		if ds != string(Persistent) && ds != string(Handoff) {
			c.add(join(path, "deployStrategy"), `Set deployStrategy to "persistent" (one daemon-wide instance, the default) or "handoff" (one per release).`,
				"must be one of: persistent, handoff, got %s", describe(ds))
		} else {
			take(c, &p.DeployStrategy, DeployStrategy(ds))
		}
	}
	if !o.has("command") {
		c.add(join(path, "command"), "Set command to the shell command that starts the process, e.g. 'node server.js --port {{port}}'.", "is required")
	} else if cmd, ok := o.nonEmptyStr("command", "Set command to the shell command that starts the process."); ok {
		take(c, &p.Command, cmd)
	}
	if cwd, ok := o.nonEmptyStr("cwd", "Set cwd to a directory, e.g. '{{releasePath}}' or '{{releasePath}}/backend'."); ok {
		take(c, &p.Cwd, cwd)
	}
	if o.has("env") {
		if env, ok := decodeEnv(c, join(path, "env"), o.m["env"]); ok {
			take(c, &p.Env, env)
		}
	}
	if o.has("port") {
		p.Port = decodePort(c, join(path, "port"), o.m["port"])
	}
	if v, given := o.m["health"]; given && v == nil {
		// The one field where null is not "absent": the Node original reads
		// health: null as health: false, and a config written for it must
		// not get a health check it turned off.
		take(c, &p.Health, &Health{Disabled: true})
	} else if o.has("health") {
		// Taken even when rejected, so the proxied process's default check
		// does not stand in for a health value that was wrong.
		take(c, &p.Health, decodeHealth(c, join(path, "health"), o.m["health"]))
	}
	if u, ok := o.nonEmptyStr("user", "Set user to the name (or uid) of the user this process runs as, e.g. 'app', or remove it."); ok {
		take(c, &p.User, u)
	}
	if g, ok := o.nonEmptyStr("group", "Set group to the name (or gid) of the group this process runs as, e.g. 'app', or remove it."); ok {
		take(c, &p.Group, g)
	}
	if o.has("systemd") {
		if u, ok := decodeUnitSettings(c, join(path, "systemd"), o.m["systemd"]); ok {
			take(c, &p.Systemd, u)
		}
	}
	if sig, ok := o.nonEmptyStr("stopSignal", "Set stopSignal to a signal name such as 'SIGTERM', 'SIGINT' or 'SIGQUIT'."); ok {
		if unix.SignalNum(sig) == 0 {
			fixed := "SIG" + strings.ToUpper(strings.TrimPrefix(strings.ToUpper(sig), "SIG"))
			fix := "Use a signal name such as 'SIGTERM', 'SIGINT' or 'SIGQUIT'."
			if unix.SignalNum(fixed) != 0 {
				fix = fmt.Sprintf("Write it as %q.", fixed)
			}
			c.add(join(path, "stopSignal"), fix, "%q is not a signal name", sig)
		} else {
			take(c, &p.StopSignal, sig)
		}
	}
	if b, ok := o.boolean("nonBlockingDrain", "Set nonBlockingDrain to true or false."); ok {
		take(c, &p.NonBlockingDrain, b)
	}
	if o.has("lifecycle") {
		p.Lifecycle = decodeLifecycle(c, join(path, "lifecycle"), o.m["lifecycle"])
	}
	if g, ok := decodeGrace(o); ok {
		take(c, &p.GracefulStopMs, g)
	}
	if v, ok := o.ms("restartDelayMs", false); ok {
		take(c, &p.RestartDelayMs, v)
	}
	if o.has("restart") {
		decodeRestart(c, join(path, "restart"), o.m["restart"], &p.Restart)
	}
	if o.has("memory") {
		p.Memory = decodeMemory(c, join(path, "memory"), o.m["memory"])
	}
	if n, ok := o.integer("replicas", 1, "a positive integer", "Set replicas to 1 or more (the number of identical instances)."); ok {
		if n, ok = o.atMost("replicas", n, ok, maxReplicas, "replicas"); ok {
			take(c, &p.Replicas, int(n))
		}
	}
	if n, ok := o.integer("outputLines", 1, "a positive integer", "Set outputLines to how many recent output lines to keep, e.g. 50."); ok {
		if n, ok = o.atMost("outputLines", n, ok, maxOutputLines, "lines"); ok {
			take(c, &p.OutputLines, int(n))
		}
	}
}

// processPath labels processes[i] with its id so messages say which one.
func processPath(i int, id string) string {
	if id == "" {
		return fmt.Sprintf("processes[%d]", i)
	}
	return fmt.Sprintf("processes[%d] (%s)", i, id)
}

// decodeGrace reads gracefulStopMs: milliseconds, or exactly the string
// "indefinite".
func decodeGrace(o obj) (GraceMs, bool) {
	const k = "gracefulStopMs"
	if s, isStr := o.m[k].(string); isStr {
		if s == "indefinite" {
			return Indefinite, true
		}
		o.c.add(join(o.path, k), `Set gracefulStopMs to a whole number of milliseconds, 0 or more, or to "indefinite" to never send SIGKILL.`,
			`must be a non-negative number of milliseconds or "indefinite", got %s`, describe(s))
		return 0, false
	}
	v, ok := o.ms(k, false)
	return GraceMs(v), ok
}

// decodeEnv reads an object of strings; keys are free-form. ok is false
// when v is not an object; the good entries of an object with bad ones are kept.
func decodeEnv(c *collector, path string, v any) (map[string]string, bool) {
	em, ok := v.(map[string]any)
	if !ok {
		c.add(path, "Write env as an object of strings, e.g. env: {NODE_ENV: 'production', PORT: '{{port}}'}.", "must be an object, got %s", describe(v))
		return nil, false
	}
	dst := make(map[string]string, len(em))
	keys := make([]string, 0, len(em))
	for k := range em {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			c.add(path, "Use a variable name without '=' such as 'NODE_ENV'.", "invalid variable name %q", k)
			continue
		}
		s, ok := em[k].(string)
		if !ok {
			c.add(path+"."+k, "Quote the value or wrap it with std.toString(...): environment values are strings.", "must be a string, got %s", describe(em[k]))
			continue
		}
		dst[k] = s
	}
	return dst, true
}

func containsPolicy(s string) bool {
	for _, p := range Policies {
		if string(p) == s {
			return true
		}
	}
	return false
}

func decodePort(c *collector, path string, v any) *PortRange {
	const fix = "Use a port number such as 8080 or an ascending range such as {from: 18182, to: 18299}."
	valid := func(where string, x any) (int, bool) {
		n, ok := x.(json.Number)
		f, err := n.Float64()
		if !ok || err != nil || f != math.Trunc(f) || f < 1 || f > 65535 {
			c.add(where, fix, "must be a port number between 1 and 65535, got %s", describe(x))
			return 0, false
		}
		return int(f), true
	}
	switch x := v.(type) {
	case json.Number:
		if n, ok := valid(path, x); ok {
			return &PortRange{From: n, To: n}
		}
	case map[string]any:
		o, ok := c.object(path, x, fieldsOf[PortRange](), fix)
		if !ok {
			return nil
		}
		if !o.has("from") {
			c.add(path, "Add from, the first port of the range, e.g. {from: 18182, to: 18299}; {from: n} alone is the port n.", "a port range needs from")
			return nil
		}
		from, ok1 := valid(path+".from", x["from"])
		to, ok2 := from, true // {from: n} is the single port n, as in the Node original
		if o.has("to") {
			to, ok2 = valid(path+".to", x["to"])
		}
		if !ok1 || !ok2 {
			return nil
		}
		if from > to {
			c.add(path, fmt.Sprintf("Swap them: {from: %d, to: %d}.", to, from), "range %d-%d is not ascending", from, to)
			return nil
		}
		return &PortRange{From: from, To: to}
	default:
		c.add(path, fix, "must be a port number or a {from, to} range, got %s", describe(v))
	}
	return nil
}

// decodeHealth reads `health: false` or a health object; nil when rejected.
func decodeHealth(c *collector, hp string, v any) *Health {
	if b, ok := v.(bool); ok {
		if b {
			c.add(hp, "Remove health to use the defaults, set it to an object such as {path: '/ping'}, or to false to disable it.", "must be an object or false, got true")
			return nil
		}
		return &Health{Disabled: true}
	}
	ho, ok := c.object(hp, v, fieldsOf[Health](), "Set health to an object such as {path: '/ping', timeoutMs: 30000}, or false to disable it.")
	if !ok {
		return nil
	}
	h := &Health{}
	if s, ok := ho.nonEmptyStr("path", "Set health.path to an HTTP path such as '/ping'."); ok {
		if !strings.HasPrefix(s, "/") {
			c.add(hp+".path", fmt.Sprintf("Write it as %q.", "/"+s), "%q must start with /", s)
		} else {
			take(c, &h.Path, s)
		}
	}
	if v, ok := ho.ms("timeoutMs", true); ok {
		take(c, &h.TimeoutMs, v)
	}
	if v, ok := ho.ms("intervalMs", true); ok {
		take(c, &h.IntervalMs, v)
	}
	if v, ok := ho.ms("startDelayMs", false); ok {
		take(c, &h.StartDelayMs, v)
	}
	return h
}

func decodeLifecycle(c *collector, path string, v any) *Lifecycle {
	o, ok := c.object(path, v, fieldsOf[Lifecycle](), "Set lifecycle to an object such as {quietCommand: 'kill -TSTP -$ROLLBRIDGE_PID', drainTimeoutMs: 60000}.")
	if !ok {
		return nil
	}
	l := &Lifecycle{}
	l.QuietCommand, _ = o.nonEmptyStr("quietCommand", "Set quietCommand to a shell command, or remove it.")
	l.DrainCommand, _ = o.nonEmptyStr("drainCommand", "Set drainCommand to a shell command that blocks until the process drained, or remove it.")
	l.StopCommand, _ = o.nonEmptyStr("stopCommand", "Set stopCommand to a shell command, or remove it.")
	if n, ok := o.ms("drainTimeoutMs", false); ok {
		take(c, &l.DrainTimeoutMs, n)
	}
	return l
}

// decodeRestart fills r, which is part of its Process.
func decodeRestart(c *collector, path string, v any, r *Restart) {
	o, ok := c.object(path, v, fieldsOf[Restart](), "Set restart to an object such as {maxRestarts: 5, windowMs: 60000, backoffFactor: 2, maxDelayMs: 30000}.")
	if !ok {
		return
	}
	if n, ok := o.integer("maxRestarts", 0, "a non-negative integer", "Set restart.maxRestarts to 0 or more, or remove it for unlimited restarts."); ok {
		m := int(n)
		take(c, &r.MaxRestarts, &m)
	}
	if n, ok := o.ms("windowMs", false); ok {
		take(c, &r.WindowMs, n)
	}
	if n, ok := o.ms("maxDelayMs", false); ok {
		take(c, &r.MaxDelayMs, n)
	}
	if o.has("backoffFactor") {
		f, _, ok := o.number("backoffFactor")
		if !ok || f < 1 || f > 1000 {
			c.add(path+".backoffFactor", "Set restart.backoffFactor to 1 (constant delay) or more, e.g. 2 to double each time.", "must be a number between 1 and 1000, got %s", describe(o.m["backoffFactor"]))
		} else {
			take(c, &r.BackoffFactor, f)
		}
	}
}

func decodeMemory(c *collector, path string, v any) *Memory {
	o, ok := c.object(path, v, fieldsOf[Memory](), "Set memory to an object such as {limitBytes: 536870912, warnBytes: 402653184}.")
	if !ok {
		return nil
	}
	m := &Memory{}
	const limFix = "Set memory.limitBytes to the RSS limit in bytes, e.g. 536870912 for 512 MiB."
	if !o.has("limitBytes") {
		c.add(path+".limitBytes", limFix, "is required when memory is set")
	} else if n, ok := o.integer("limitBytes", 1, "a positive integer number of bytes", limFix); ok {
		take(c, &m.LimitBytes, n)
	}
	if n, ok := o.integer("warnBytes", 0, "a non-negative integer number of bytes", "Set memory.warnBytes below limitBytes, or 0 to turn the warning off."); ok {
		take(c, &m.WarnBytes, n)
	}
	if n, ok := o.ms("checkIntervalMs", true); ok {
		take(c, &m.CheckIntervalMs, n)
	}
	if n, ok := o.integer("maxBytes", 0, "a non-negative integer number of bytes", "Set memory.maxBytes above limitBytes, or 0 for no hard limit."); ok {
		take(c, &m.MaxBytes, n)
		if n > 0 && m.LimitBytes > 0 && n <= m.LimitBytes {
			c.add(path+".maxBytes", "Set memory.maxBytes above limitBytes: it is the backstop for when the graceful restart at limitBytes is not enough.",
				"maxBytes (%d) must be above limitBytes (%d)", n, m.LimitBytes)
		}
	}
	return m
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// validCookieName accepts "" (no cookie) or 1 to 64 letters, digits, '_',
// '-' and '.': characters every browser and cookie parser keeps as they are.
func validCookieName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
