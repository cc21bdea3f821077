package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// The struct definitions in config.go are the schema: a field's `json` tag
// is its name in the config file, and its `reload` tag says what it takes to
// apply a change to it. The decoder's known-field lists and Diff are derived
// from them, so a field is declared once.

// Reload says what it takes for a changed field to reach a running daemon.
// The zero value is not a class; every schema field declares one of the three.
type Reload int

// The reload classes, from the mildest to the most demanding.
const (
	// ReloadLive: the new value is in use as soon as the reloaded config is.
	ReloadLive Reload = iota + 1
	// ReloadNextDeploy: applies from the next deploy, rollback or restart
	// command on; processes already running keep the definition they started with.
	ReloadNextDeploy
	// ReloadRestart: the daemon bound sockets or opened files from the value
	// at start, so a SIGHUP reload refuses the change; restart the daemon.
	ReloadRestart
)

// String is the class's name as written in the `reload` tag and in
// docs/config.md: "live", "next-deploy" or "restart".
func (r Reload) String() string {
	switch r {
	case ReloadLive:
		return "live"
	case ReloadNextDeploy:
		return "next-deploy"
	case ReloadRestart:
		return "restart"
	}
	return fmt.Sprintf("Reload(%d)", int(r))
}

// parseReload reads a `reload` tag; ok is false for a missing or unknown one.
func parseReload(tag string) (Reload, bool) {
	for _, r := range []Reload{ReloadLive, ReloadNextDeploy, ReloadRestart} {
		if r.String() == tag {
			return r, true
		}
	}
	return 0, false
}

// schemaField is one field of a schema struct.
type schemaField struct {
	name   string // JSON name; "" for a field that is part of its parent's value (Health.Disabled)
	index  int    // in the struct
	reload Reload // 0 when the tag is missing or unknown
}

// schemaFields lists the fields of struct type t that belong to the config:
// those with a JSON name, and `json:"-"` fields that carry a reload tag
// because they are part of the parent's value (`health: false`). Config.Path
// is neither: it says where the config came from, not what it says.
func schemaFields(t reflect.Type) []schemaField {
	var out []schemaField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		tag, tagged := f.Tag.Lookup("reload")
		if name == "" || name == "-" {
			if !tagged {
				continue
			}
			name = ""
		}
		r, _ := parseReload(tag)
		out = append(out, schemaField{name: name, index: i, reload: r})
	}
	return out
}

// isObject reports whether t (after pointers) is a schema struct, i.e. a
// JSON object whose keys are its fields. IDOrName and netip.Prefix are
// structs but single values, and carry no JSON tags.
func isObject(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		if n, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); n != "" && n != "-" {
			return true
		}
	}
	return false
}

// fieldsOf returns the JSON names of T's fields, sorted: the keys the
// decoder accepts in the object T is decoded from.
func fieldsOf[T any]() []string {
	var names []string
	for _, f := range schemaFields(reflect.TypeFor[T]()) {
		if f.name != "" {
			names = append(names, f.name)
		}
	}
	sort.Strings(names)
	return names
}

// Change is one field whose value differs between two configs.
type Change struct {
	// Path names the field as issues do: "proxy.port",
	// "processes[0] (web).health.path". A field that appeared or went away as
	// a whole ("processes[1] (worker).memory", a process added) is one Change.
	Path   string
	Reload Reload
	// From and To are the values as JSON, "unset" for an absent optional
	// field and "N entries" for a list of objects.
	From, To string
}

// String reads "proxy.port changed from 8182 to 9000".
func (c Change) String() string {
	return fmt.Sprintf("%s changed from %s to %s", c.Path, c.From, c.To)
}

// Diff lists the fields whose values differ between a and b, in the order
// the schema declares them, each with its reload class. Both must be non-nil;
// normally both come from Load. Config.Path is not compared.
func Diff(a, b *Config) []Change {
	var out []Change
	diffObject(&out, "", reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem())
	return out
}

// diffObject compares two values of one schema struct type, field by field.
func diffObject(out *[]Change, path string, a, b reflect.Value) {
	fields := schemaFields(a.Type())
	for _, f := range fields {
		// A field without a JSON name is part of the object's own value:
		// health: false and health: {...} differ as a whole.
		if f.name == "" && !equalValue(a.Field(f.index), b.Field(f.index)) {
			*out = append(*out, change(path, f.reload, a, b))
			return
		}
	}
	for _, f := range fields {
		if f.name != "" {
			diffValue(out, join(path, f.name), f.reload, a.Field(f.index), b.Field(f.index))
		}
	}
}

// diffValue compares one field's values; class is the field's reload class.
func diffValue(out *[]Change, path string, class Reload, a, b reflect.Value) {
	if a.Kind() == reflect.Pointer {
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				*out = append(*out, change(path, class, a, b))
			}
			return
		}
		a, b = a.Elem(), b.Elem()
	}
	switch {
	case isObject(a.Type()):
		diffObject(out, path, a, b)
	case a.Kind() == reflect.Slice && isObject(a.Type().Elem()) && idIndex(a.Type().Elem()) >= 0:
		diffByID(out, path, class, a, b)
	case a.Kind() == reflect.Slice && isObject(a.Type().Elem()):
		if a.Len() != b.Len() {
			*out = append(*out, change(path, class, a, b))
			return
		}
		for i := range a.Len() {
			diffValue(out, elemPath(path, i, a.Index(i), b.Index(i)), class, a.Index(i), b.Index(i))
		}
	case !equalValue(a, b):
		*out = append(*out, change(path, class, a, b))
	}
}

// idIndex is the index of the "id" field of schema struct t, or -1.
func idIndex(t reflect.Type) int {
	for _, f := range schemaFields(t) {
		if f.name == "id" && t.Field(f.index).Type.Kind() == reflect.String {
			return f.index
		}
	}
	return -1
}

// ids lists the ids of a slice of schema structs with an id field.
func ids(v reflect.Value) []string {
	idx := idIndex(v.Type().Elem())
	out := make([]string, v.Len())
	for i := range v.Len() {
		out[i] = v.Index(i).Field(idx).String()
	}
	return out
}

// diffByID compares two lists whose entries have ids (processes[]) entry by
// entry, matched by id, so that reordering them is no change. When the set
// of ids differs, the list changes as a whole, rendered as its ids.
func diffByID(out *[]Change, path string, class Reload, a, b reflect.Value) {
	ia, ib := ids(a), ids(b)
	byID := make(map[string]int, len(ia))
	for i, id := range ia {
		byID[id] = i
	}
	same := len(ia) == len(ib)
	for _, id := range ib {
		if _, ok := byID[id]; !ok {
			same = false
		}
	}
	if !same {
		from, _ := json.Marshal(ia)
		to, _ := json.Marshal(ib)
		*out = append(*out, Change{Path: path, Reload: class, From: string(from), To: string(to)})
		return
	}
	for j, id := range ib {
		i := byID[id]
		diffValue(out, elemPath(path, j, a.Index(i), b.Index(j)), class, a.Index(i), b.Index(j))
	}
}

// elemPath labels a list entry with its id when both sides agree on one,
// the way issues name processes: "processes[0] (web)".
func elemPath(path string, i int, a, b reflect.Value) string {
	p := fmt.Sprintf("%s[%d]", path, i)
	if a.Kind() != reflect.Struct {
		return p
	}
	for _, f := range schemaFields(a.Type()) {
		if f.name == "id" && a.Field(f.index).Kind() == reflect.String {
			if id := a.Field(f.index).String(); id != "" && id == b.Field(f.index).String() {
				return fmt.Sprintf("%s (%s)", p, id)
			}
		}
	}
	return p
}

// equalValue compares two leaf values. An empty list or map equals a nil
// one: both mean "none", and a hand-built Config may hold either.
func equalValue(a, b reflect.Value) bool {
	if k := a.Kind(); (k == reflect.Slice || k == reflect.Map) && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func change(path string, class Reload, a, b reflect.Value) Change {
	if path == "" {
		path = "config"
	}
	return Change{Path: path, Reload: class, From: render(a), To: render(b)}
}

// render shows a value the way the config's JSON form does.
func render(v reflect.Value) string {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return "unset"
	}
	if v.Kind() == reflect.Slice && isObject(v.Type().Elem()) {
		if v.Len() == 1 {
			return "1 entry"
		}
		return fmt.Sprintf("%d entries", v.Len())
	}
	data, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprint(v.Interface())
	}
	return string(data)
}
