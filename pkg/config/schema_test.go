package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// schemaLeaf is a field the schema declares, named the way docs/config.md
// names fields: "proxy.port", "processes[].health.path".
type schemaLeaf struct {
	path   string
	reload Reload
}

// schemaObjects lists every schema struct type reachable from Config.
func schemaObjects() []reflect.Type {
	var out []reflect.Type
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if !isObject(t) || seen[t] {
			return
		}
		seen[t] = true
		out = append(out, t)
		for _, f := range schemaFields(t) {
			walk(t.Field(f.index).Type)
		}
	}
	walk(reflect.TypeFor[Config]())
	return out
}

// elemType strips pointers and one level of slice: what a field's JSON
// value is made of.
func elemType(t reflect.Type) (reflect.Type, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice && isObject(t.Elem()) {
		return t.Elem(), true
	}
	return t, false
}

// schemaLeaves lists every field that holds a value rather than an object.
func schemaLeaves(t reflect.Type, prefix string) []schemaLeaf {
	var out []schemaLeaf
	for _, f := range schemaFields(t) {
		if f.name == "" {
			continue
		}
		path := join(prefix, f.name)
		et, list := elemType(t.Field(f.index).Type)
		if list {
			path += "[]"
		}
		if isObject(et) {
			out = append(out, schemaLeaves(et, path)...)
			continue
		}
		out = append(out, schemaLeaf{path, f.reload})
	}
	return out
}

func TestEveryFieldHasAReloadClass(t *testing.T) {
	for _, typ := range schemaObjects() {
		for _, f := range schemaFields(typ) {
			sf := typ.Field(f.index)
			if f.reload == 0 {
				t.Errorf("%s.%s has reload tag %q; want one of live, next-deploy, restart", typ.Name(), sf.Name, sf.Tag.Get("reload"))
				continue
			}
			// A field holding an object is reported as a whole when it
			// appears or goes away, so it must be at least as demanding as
			// anything inside it.
			et, _ := elemType(sf.Type)
			if !isObject(et) {
				continue
			}
			for _, inner := range schemaFields(et) {
				if inner.reload > f.reload {
					t.Errorf("%s.%s is %s but contains %s, which is %s", typ.Name(), sf.Name, f.reload, et.Field(inner.index).Name, inner.reload)
				}
			}
		}
	}
}

// TestKnownFieldsAreTheStructFields pins the decoder's key lists to the
// struct definitions: every field of every schema struct is accepted where
// that struct is decoded, and nothing else is.
func TestKnownFieldsAreTheStructFields(t *testing.T) {
	for _, typ := range schemaObjects() {
		var want []string
		for i := range typ.NumField() {
			if n, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ","); n != "" && n != "-" {
				want = append(want, n)
			}
		}
		sort.Strings(want)
		got := knownFieldsByType(typ)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoder accepts %v, struct declares %v", typ.Name(), got, want)
		}
	}
}

// knownFieldsByType calls fieldsOf for a runtime type.
func knownFieldsByType(t reflect.Type) []string {
	switch t {
	case reflect.TypeFor[Config]():
		return fieldsOf[Config]()
	case reflect.TypeFor[Control]():
		return fieldsOf[Control]()
	case reflect.TypeFor[Proxy]():
		return fieldsOf[Proxy]()
	case reflect.TypeFor[ReleaseRetention]():
		return fieldsOf[ReleaseRetention]()
	case reflect.TypeFor[LegacyTakeover]():
		return fieldsOf[LegacyTakeover]()
	case reflect.TypeFor[Metrics]():
		return fieldsOf[Metrics]()
	case reflect.TypeFor[AccessLog]():
		return fieldsOf[AccessLog]()
	case reflect.TypeFor[LegacyProcess]():
		return fieldsOf[LegacyProcess]()
	case reflect.TypeFor[Process]():
		return fieldsOf[Process]()
	case reflect.TypeFor[PortRange]():
		return fieldsOf[PortRange]()
	case reflect.TypeFor[Health]():
		return fieldsOf[Health]()
	case reflect.TypeFor[Lifecycle]():
		return fieldsOf[Lifecycle]()
	case reflect.TypeFor[Restart]():
		return fieldsOf[Restart]()
	case reflect.TypeFor[Memory]():
		return fieldsOf[Memory]()
	case reflect.TypeFor[Maintenance]():
		return fieldsOf[Maintenance]()
	}
	return []string{"no decoder for " + t.Name() + "; add it to knownFieldsByType"}
}

// jsonPath addresses a value inside a decoded JSON tree.
type jsonPath []any // string keys and int indexes

func (p jsonPath) String() string {
	var b strings.Builder
	for _, s := range p {
		switch s := s.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s)
		case int:
			fmt.Fprintf(&b, "[%d]", s)
		}
	}
	return b.String()
}

// schemaName drops the indexes: processes[1].command -> processes[].command.
func (p jsonPath) schemaName() string {
	return regexp.MustCompile(`\[\d+\]`).ReplaceAllString(p.String(), "[]")
}

func (p jsonPath) get(v any) (any, bool) {
	for _, s := range p {
		switch s := s.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[s]; !ok {
				return nil, false
			}
		case int:
			a, ok := v.([]any)
			if !ok || s >= len(a) {
				return nil, false
			}
			v = a[s]
		}
	}
	return v, true
}

// leafOccurrences walks a JSON config along the schema and returns the path
// of every value it sets, and the keys the schema does not know.
func leafOccurrences(t reflect.Type, v any, at jsonPath) (leaves []jsonPath, unknown []string) {
	m, _ := v.(map[string]any)
	byName := map[string]reflect.Type{}
	for _, f := range schemaFields(t) {
		byName[f.name] = t.Field(f.index).Type
	}
	for k, x := range m {
		p := append(append(jsonPath{}, at...), k)
		ft, ok := byName[k]
		if !ok || k == "" {
			unknown = append(unknown, p.String())
			continue
		}
		et, list := elemType(ft)
		switch {
		case list && isObject(et):
			arr, _ := x.([]any)
			for i, e := range arr {
				l, u := leafOccurrences(et, e, append(append(jsonPath{}, p...), i))
				leaves, unknown = append(leaves, l...), append(unknown, u...)
			}
		case isObject(et):
			l, u := leafOccurrences(et, x, p)
			leaves, unknown = append(leaves, l...), append(unknown, u...)
		default:
			leaves = append(leaves, p)
		}
	}
	return leaves, unknown
}

func decodeJSON(t testing.TB, v any) (any, error) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Decode(data, "/srv/app/rollbridge.jsonnet")
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := json.Unmarshal(out, &tree); err != nil {
		t.Fatal(err)
	}
	return tree, nil
}

// TestDecoderReadsEverySchemaField fails when a struct field is added
// without the decoder reading it, or testdata/every-field.json without it.
// The fixture sets every field; each one must come out of the decoder as
// given, and for each field at least one setting must matter: leaving it
// out changes the result, or is an issue naming it.
func TestDecoderReadsEverySchemaField(t *testing.T) {
	data, err := os.ReadFile("testdata/every-field.json")
	if err != nil {
		t.Fatal(err)
	}
	var fixture any
	if err := json.Unmarshal(data, &fixture); err != nil {
		t.Fatal(err)
	}
	leaves, unknown := leafOccurrences(reflect.TypeFor[Config](), fixture, nil)
	for _, u := range unknown {
		t.Errorf("fixture sets %s, which is not a schema field", u)
	}
	covered := map[string]bool{}
	for _, l := range leaves {
		covered[l.schemaName()] = true
	}
	for _, l := range schemaLeaves(reflect.TypeFor[Config](), "") {
		if !covered[l.path] {
			t.Errorf("testdata/every-field.json does not set %s; add it with a value other than its default", l.path)
		}
	}

	full, err := decodeJSON(t, fixture)
	if err != nil {
		t.Fatalf("fixture does not validate: %v", err)
	}
	matters := map[string]bool{}
	for _, l := range leaves {
		want, _ := l.get(fixture)
		if got, _ := l.get(full); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded %v, fixture says %v", l, got, want)
		}
		// Leave it out: the default must differ, or the absence be an issue.
		var clone any
		_ = json.Unmarshal(data, &clone)
		parent, _ := l[:len(l)-1].get(clone)
		delete(parent.(map[string]any), l[len(l)-1].(string))
		without, err := decodeJSON(t, clone)
		var issues Issues
		switch {
		case errors.As(err, &issues):
			for _, is := range issues {
				matters[l.schemaName()] = matters[l.schemaName()] || strings.Contains(is.Message, l[len(l)-1].(string))
			}
		case err != nil:
			t.Fatalf("without %s: %v", l, err)
		default:
			got, _ := l.get(without)
			want, _ := l.get(full)
			matters[l.schemaName()] = matters[l.schemaName()] || !reflect.DeepEqual(got, want)
		}
	}
	for name := range covered {
		if !matters[name] {
			t.Errorf("%s: every value the fixture gives equals the default; give one that differs", name)
		}
	}
}

// TestDurationMethods: each ...Ms field has a method without the suffix
// returning the same span as a Duration.
func TestDurationMethods(t *testing.T) {
	for _, typ := range schemaObjects() {
		for _, f := range schemaFields(typ) {
			sf := typ.Field(f.index)
			if !strings.HasSuffix(sf.Name, "Ms") || sf.Type.Kind() != reflect.Int64 {
				continue
			}
			v := reflect.New(typ) // *T has the methods of T and *T
			v.Elem().Field(f.index).SetInt(1234)
			m := v.MethodByName(strings.TrimSuffix(sf.Name, "Ms"))
			if !m.IsValid() {
				t.Errorf("%s.%s has no method %s() time.Duration", typ.Name(), sf.Name, strings.TrimSuffix(sf.Name, "Ms"))
				continue
			}
			out := m.Call(nil)
			if len(out) != 1 || out[0].Type() != reflect.TypeFor[time.Duration]() {
				t.Errorf("%s.%s: method does not return a time.Duration", typ.Name(), sf.Name)
				continue
			}
			if got := out[0].Interface().(time.Duration); got != 1234*time.Millisecond {
				t.Errorf("%s.%s = 1234: got %v, want 1.234s", typ.Name(), sf.Name, got)
			}
		}
	}
}

func TestDiff(t *testing.T) {
	base := `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'x'}]}`
	type want struct {
		path     string
		reload   Reload
		from, to string
	}
	for _, tc := range []struct {
		name, src string
		want      []want
	}{
		{"identical", base, nil},
		{"proxy port", `{proxy: {port: 9000}, processes: [` + web + `, {id: 'w', command: 'x'}]}`,
			[]want{{"proxy.port", ReloadRestart, "8182", "9000"}}},
		{"proxy host moves upstreamHost too", `{proxy: {host: '10.0.0.5'}, processes: [` + web + `, {id: 'w', command: 'x'}]}`,
			[]want{{"proxy.host", ReloadRestart, `"127.0.0.1"`, `"10.0.0.5"`}, {"proxy.upstreamHost", ReloadNextDeploy, `"127.0.0.1"`, `"10.0.0.5"`}}},
		{"control mode set", `{control: {mode: '640'}, proxy: {}, processes: [` + web + `, {id: 'w', command: 'x'}]}`,
			[]want{{"control.mode", ReloadRestart, "unset", `"640"`}}},
		{"application", `{application: 'other', proxy: {}, processes: [` + web + `, {id: 'w', command: 'x'}]}`,
			[]want{{"application", ReloadRestart, `"app"`, `"other"`}, {"control.path", ReloadRestart, `"/run/rollbridge/app.sock"`, `"/run/rollbridge/other.sock"`}}},
		{"trusted proxies", `{proxy: {trustedProxies: ['10.0.0.1']}, processes: [` + web + `, {id: 'w', command: 'x'}]}`,
			[]want{{"proxy.trustedProxies", ReloadLive, "[]", `["10.0.0.1/32"]`}}},
		{"hold timeout", `{proxy: {holdTimeoutMs: 0}, processes: [` + web + `, {id: 'w', command: 'x'}]}`,
			[]want{{"proxy.holdTimeoutMs", ReloadLive, "30000", "0"}}},
		{"drain timeout", `{proxy: {drainTimeoutMs: 5}, processes: [` + web + `, {id: 'w', command: 'x'}]}`,
			[]want{{"proxy.drainTimeoutMs", ReloadNextDeploy, "60000", "5"}}},
		{"process command", `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'y'}]}`,
			[]want{{"processes[1] (w).command", ReloadNextDeploy, `"x"`, `"y"`}}},
		{"memory added", `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'x', memory: {limitBytes: 5}}]}`,
			[]want{{"processes[1] (w).memory", ReloadNextDeploy, "unset", `{"limitBytes":5,"warnBytes":0,"checkIntervalMs":5000}`}}},
		{"health disabled", `{proxy: {}, processes: [` + web + ` + {health: false}, {id: 'w', command: 'x'}]}`,
			[]want{{"processes[0] (web).health", ReloadNextDeploy, `{"path":"/ping","timeoutMs":30000,"intervalMs":250,"startDelayMs":0}`, "false"}}},
		{"process added", `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'x'}, {id: 'v', command: 'x'}]}`,
			[]want{{"processes", ReloadRestart, `["web","w"]`, `["web","w","v"]`}}},
		{"renamed process", `{proxy: {}, processes: [` + web + `, {id: 'v', command: 'x'}]}`,
			[]want{{"processes", ReloadRestart, `["web","w"]`, `["web","v"]`}}},
		{"processes reordered", `{proxy: {}, processes: [{id: 'w', command: 'x'}, ` + web + `]}`, nil},
		{"reordered and changed", `{proxy: {}, processes: [{id: 'w', command: 'y'}, ` + web + `]}`,
			[]want{{"processes[0] (w).command", ReloadNextDeploy, `"x"`, `"y"`}}},
		{"policy", `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'x', policy: 'singleton'}]}`,
			[]want{{"processes[1] (w).policy", ReloadRestart, `"companion"`, `"singleton"`}}},
		{"becomes a service", `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'x', policy: 'service', port: {from: 7000, to: 7009}}]}`,
			[]want{{"processes[1] (w).policy", ReloadRestart, `"companion"`, `"service"`}, {"processes[1] (w).port", ReloadNextDeploy, "unset", `{"from":7000,"to":7009}`}}},
		{"replicas", `{proxy: {}, processes: [` + web + `, {id: 'w', command: 'x', replicas: 2}]}`,
			[]want{{"processes[1] (w).replicas", ReloadNextDeploy, "1", "2"}}},
		{"legacy takeover", `{legacyTakeover: {screens: ['s']}, proxy: {}, processes: [` + web + `, {id: 'w', command: 'x'}]}`,
			[]want{{"legacyTakeover", ReloadLive, "unset", `{"screens":["s"],"processes":[],"forceStopTimeoutMs":10000}`}}},
		{"restore and retention", `{restoreOnStart: false, releaseRetention: {keep: 3}, proxy: {}, processes: [` + web + `, {id: 'w', command: 'x'}]}`,
			[]want{{"releaseRetention.keep", ReloadNextDeploy, "10", "3"}, {"restoreOnStart", ReloadLive, "true", "false"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := mustLoad(t, base), mustLoad(t, tc.src)
			got := Diff(a, b)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d changes %v, want %d %v", len(got), got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if g := got[i]; g.Path != w.path || g.Reload != w.reload || g.From != w.from || g.To != w.to {
					t.Errorf("change %d: got {%s %s %s %s}, want %v", i, g.Path, g.Reload, g.From, g.To, w)
				}
			}
			if back := Diff(b, a); len(back) != len(got) {
				t.Errorf("Diff(b, a) has %d changes, Diff(a, b) %d", len(back), len(got))
			}
		})
	}
}

func TestDiffDeployStrategy(t *testing.T) {
	svc := `{id: 's', policy: 'service', command: 'x', port: {from: 7000, to: 7009}}`
	a := mustLoad(t, `{proxy: {}, processes: [`+web+`, `+svc+`]}`)
	b := mustLoad(t, `{proxy: {}, processes: [`+web+`, `+svc+` + {deployStrategy: 'handoff'}]}`)
	got := Diff(a, b)
	if len(got) != 1 || got[0].Path != "processes[1] (s).deployStrategy" || got[0].Reload != ReloadRestart || got[0].To != `"handoff"` {
		t.Errorf("got %v, want one restart-class change of processes[1] (s).deployStrategy", got)
	}
}

func TestDiffTreatsEmptyAndNilAlike(t *testing.T) {
	a := mustLoad(t, `{proxy: {}, processes: [`+web+`]}`)
	b := *a
	b.Proxy.TrustedProxies = nil
	b.Processes = append([]Process(nil), a.Processes...)
	b.Processes[0].Env = nil
	if got := Diff(a, &b); len(got) != 0 {
		t.Errorf("got %v, want no changes", got)
	}
}

func TestChangeString(t *testing.T) {
	c := Change{Path: "proxy.port", Reload: ReloadRestart, From: "8182", To: "9000"}
	if got, want := c.String(), "proxy.port changed from 8182 to 9000"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for r, want := range map[Reload]string{ReloadLive: "live", ReloadNextDeploy: "next-deploy", ReloadRestart: "restart", 0: "Reload(0)"} {
		if r.String() != want {
			t.Errorf("Reload(%d).String() = %q, want %q", int(r), r.String(), want)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	cfg := mustLoad(t, `{proxy: {trustedProxies: ['10.1.2.3', '192.168.0.0/16', '::1', 'fd00::/8', '::ffff:172.16.0.1', '::ffff:172.16.0.0/108']},
		processes: [`+web+`]}`)
	want := []netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("172.16.0.1/32"), netip.MustParsePrefix("172.16.0.0/12"),
	}
	if !reflect.DeepEqual(cfg.Proxy.TrustedProxies, want) {
		t.Errorf("got %v, want %v", cfg.Proxy.TrustedProxies, want)
	}
	data, err := json.Marshal(cfg.Proxy)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"trustedProxies":["10.1.2.3/32","192.168.0.0/16","::1/128","fd00::/8","172.16.0.1/32","172.16.0.0/12"]`) {
		t.Errorf("JSON form: %s", data)
	}
	if got := mustLoad(t, `{proxy: {}, processes: [`+web+`]}`).Proxy.TrustedProxies; got == nil || len(got) != 0 {
		t.Errorf("default: got %#v, want an empty list", got)
	}
}

// TestDocsListReloadClasses keeps the reload table in docs/config.md true:
// every schema field is matched by exactly one row, the row's class is the
// field's, and every name in the table matches a field.
func TestDocsListReloadClasses(t *testing.T) {
	data, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	const heading = "\n## Reloading a running daemon\n"
	start := strings.Index(doc, heading)
	if start < 0 {
		t.Fatalf("docs/config.md has no %q section", strings.TrimSpace(heading))
	}
	section := doc[start+len(heading):]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	type row struct {
		class    Reload
		patterns []string
	}
	var rows []row
	tick := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		class, ok := parseReload(strings.Trim(strings.TrimSpace(cells[1]), "`"))
		if !ok {
			t.Errorf("row %q: first cell is not a reload class", line)
			continue
		}
		r := row{class: class}
		for _, m := range tick.FindAllStringSubmatch(cells[3], -1) {
			r.patterns = append(r.patterns, m[1])
		}
		rows = append(rows, r)
	}
	if len(rows) != 3 {
		t.Fatalf("found %d class rows in the section, want 3", len(rows))
	}
	match := func(pattern, path string) bool {
		if prefix, ok := strings.CutSuffix(pattern, ".*"); ok {
			return strings.HasPrefix(path, prefix+".") || strings.HasPrefix(path, prefix+"[].")
		}
		return pattern == path
	}
	used := map[string]bool{}
	for _, leaf := range schemaLeaves(reflect.TypeFor[Config](), "") {
		var in []Reload
		for _, r := range rows {
			for _, p := range r.patterns {
				if match(p, leaf.path) {
					in = append(in, r.class)
					used[p] = true
				}
			}
		}
		switch {
		case len(in) == 0:
			t.Errorf("%s (%s) is not in the table", leaf.path, leaf.reload)
		case len(in) > 1:
			t.Errorf("%s is in the table %d times", leaf.path, len(in))
		case in[0] != leaf.reload:
			t.Errorf("%s is listed as %s, the schema says %s", leaf.path, in[0], leaf.reload)
		}
	}
	for _, r := range rows {
		for _, p := range r.patterns {
			if !used[p] {
				t.Errorf("the table names %q, which is no config field", p)
			}
		}
	}
}
