package migrate

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// How a value that comes from process.env is found, and turned into an
// expression over std.extVar('env'):
//
// The module is evaluated once with the real environment (the result that
// the Jsonnet file must reproduce), then four more times for each variable
// it read, with only that variable changed: set to a marker string, unset,
// set to "", and set to a marker number. A field whose value does not move
// in any of these runs is a constant. A string field that holds the marker
// where the variable's value went is a concatenation of literal text and
// the variable; the unset run gives its default, the empty run says
// whether an empty value counts as unset (process.env.X || "d") or not
// (process.env.X ?? "d"). A number field that becomes the marker number is
// the variable parsed as an integer. Anything else that moves (a boolean
// from a comparison, a process that exists only when a variable is set)
// is written with its current value and reported as a Warning.

// maxTracedVars bounds the extra evaluations (four per variable).
const maxTracedVars = 64

type probeKind int

const (
	probeMarker probeKind = iota
	probeUnset
	probeEmpty
	probeNumber
)

// probe is one evaluation with one variable changed; tree is nil when the
// module failed under it (a variable it requires, say).
type probe struct {
	key  string
	kind probeKind
	tree *node
}

func markerString(i int) string { return fmt.Sprintf("\x00rbenv%d\x00", i) }
func markerNumber(i int) int    { return 90000000 + 7*i }

// probeEnvs lists the environments to evaluate for the variables keys.
func probeEnvs(env map[string]string, keys []string) (envs []map[string]string, probes []probe) {
	for i, k := range keys {
		for _, kind := range []probeKind{probeMarker, probeUnset, probeEmpty, probeNumber} {
			e := make(map[string]string, len(env)+1)
			for k2, v := range env {
				e[k2] = v
			}
			switch kind {
			case probeMarker:
				e[k] = markerString(i)
			case probeUnset:
				delete(e, k)
			case probeEmpty:
				e[k] = ""
			case probeNumber:
				e[k] = strconv.Itoa(markerNumber(i))
			}
			envs = append(envs, e)
			probes = append(probes, probe{key: k, kind: kind})
		}
	}
	return envs, probes
}

// envPlan is the outcome of the tracing: the Jsonnet expression of every
// field that comes from the environment, keyed by pathString.
type envPlan struct {
	exprs    map[string]string
	optional map[string]string // field path -> the variable it exists with
	used     map[string]bool   // variables some field was seen to depend on
	usesEnv  bool
	usesOr   bool // the envOr helper (an empty value counts as unset)
	warnings []Warning
}

type tracer struct {
	env   map[string]string
	index map[string]int // variable -> its marker number
	plan  *envPlan
}

// trace walks the real result r with the probe results alongside.
func (t *tracer) trace(r *node, probes []probe, p []pathElem) {
	added := t.addOptional(r, probes, p)
	var shape []string
	optional := map[string]string{} // field -> the variable without which it is left out
	for _, pr := range probes {
		if pr.tree == nil || sameShape(expectedShape(r, added, pr), pr.tree) {
			continue
		}
		if missing, ok := onlyMissing(r, pr.tree); ok && pr.kind == probeUnset {
			// { X: process.env.X }: undefined when unset, so left out.
			for _, k := range missing {
				optional[k] = pr.key
			}
			continue
		}
		shape = appendUnique(shape, pr.key)
	}
	if len(shape) > 0 {
		t.fixed(p, shape, "its shape")
		return
	}
	switch r.kind {
	case kObject:
		for _, f := range r.fields {
			fp := extend(p, f.key)
			if _, ok := added[f.key]; ok {
				continue
			}
			if v, ok := optional[f.key]; ok {
				t.plan.optional[pathString(fp)] = v
				t.plan.usesEnv = true
			}
			t.trace(f.val, sub(probes, func(n *node) *node { return n.get(f.key) }), fp)
		}
		return
	case kArray:
		for i, e := range r.elems {
			t.trace(e, sub(probes, func(n *node) *node { return n.elems[i] }), extend(p, i))
		}
		return
	}
	var deps []string
	for _, pr := range probes {
		if pr.tree != nil && !equal(r, pr.tree) {
			deps = appendUnique(deps, pr.key)
		}
	}
	if len(deps) == 0 {
		return
	}
	expr, ok := "", false
	switch r.kind {
	case kString:
		expr, ok = t.stringExpr(r.str, deps, probes)
	case kNumber:
		if len(deps) == 1 {
			expr, ok = t.numberExpr(r.str, deps[0], probes)
		}
	}
	if !ok {
		t.fixed(p, deps, "it")
		return
	}
	t.plan.exprs[pathString(p)] = expr
	t.plan.usesEnv = true
	for _, k := range deps {
		t.plan.used[k] = true
	}
}

func (t *tracer) fixed(p []pathElem, keys []string, what string) {
	names := make([]string, len(keys))
	for i, k := range keys {
		t.plan.used[k] = true
		names[i] = "process.env." + k
	}
	t.plan.warnings = append(t.plan.warnings, Warning{Path: pathString(p), Message: fmt.Sprintf(
		"%s depends on %s in a way the migration cannot express; written with its value under the current environment (write the std.extVar('env') expression by hand)",
		what, strings.Join(names, ", "))})
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func sub(probes []probe, f func(*node) *node) []probe {
	out := make([]probe, len(probes))
	for i, pr := range probes {
		out[i] = probe{key: pr.key, kind: pr.kind}
		if pr.tree != nil {
			out[i].tree = f(pr.tree) // nil where the probe lacks the field
		}
	}
	return out
}

// addOptional finds the fields { X: process.env.X } that are left out of
// r because X is unset now, and adds them to r, to be written only when
// the variable is set.
func (t *tracer) addOptional(r *node, probes []probe, p []pathElem) map[string]string {
	added := map[string]string{} // field -> its variable
	if r.kind != kObject {
		return added
	}
	for _, pr := range probes {
		if pr.kind != probeMarker || pr.tree == nil {
			continue
		}
		missing, ok := onlyMissing(pr.tree, r)
		if !ok {
			continue
		}
		for _, f := range missing {
			if v := pr.tree.get(f); v.kind != kString || v.str != markerString(t.index[pr.key]) {
				return added // not a plain pass-through: leave it to the shape check
			}
		}
		var fields []field
		for _, f := range pr.tree.fields {
			if old := r.get(f.key); old != nil {
				fields = append(fields, field{f.key, old})
				continue
			}
			fp := pathString(extend(p, f.key))
			fields = append(fields, field{f.key, &node{kind: kString}})
			t.plan.optional[fp] = pr.key
			t.plan.exprs[fp] = t.varExpr(pr.key, useRequired, "")
			t.plan.used[pr.key], t.plan.usesEnv = true, true
			added[f.key] = pr.key
		}
		r.fields = fields
	}
	return added
}

// expectedShape is r as the probe pr should see it: without the fields
// added by addOptional, except those of pr's own variable while it is set.
func expectedShape(r *node, added map[string]string, pr probe) *node {
	if len(added) == 0 {
		return r
	}
	e := &node{kind: kObject}
	for _, f := range r.fields {
		if v, ok := added[f.key]; !ok || v == pr.key && pr.kind != probeUnset {
			e.fields = append(e.fields, f)
		}
	}
	return e
}

// onlyMissing says whether b is a with some fields left out, and which.
func onlyMissing(a, b *node) ([]string, bool) {
	if a.kind != kObject || b.kind != kObject {
		return nil, false
	}
	var missing []string
	j := 0
	for _, f := range a.fields {
		if j < len(b.fields) && b.fields[j].key == f.key {
			j++
			continue
		}
		missing = append(missing, f.key)
	}
	return missing, j == len(b.fields) && len(missing) > 0
}

// sameShape says whether a and b are both scalars, or containers with the
// same keys in the same order (or the same length).
func sameShape(a, b *node) bool {
	ac, bc := a.kind == kObject || a.kind == kArray, b.kind == kObject || b.kind == kArray
	if !ac && !bc {
		return true
	}
	if a.kind != b.kind || len(a.fields) != len(b.fields) || len(a.elems) != len(b.elems) {
		return false
	}
	for i := range a.fields {
		if a.fields[i].key != b.fields[i].key {
			return false
		}
	}
	return true
}

func find(probes []probe, key string, kind probeKind) *node {
	for _, pr := range probes {
		if pr.key == key && pr.kind == kind {
			return pr.tree
		}
	}
	return nil
}

// varUse is how a field uses one variable.
type varUse int

const (
	useRequired varUse = iota // the module fails without it
	usePresence               // a default when unset (??, !== undefined)
	useTruthy                 // a default when unset or empty (||)
)

// solve finds v with strings.Join(segs, v) == r.
func solve(segs []string, r string) (string, bool) {
	n := len(segs) - 1
	total := 0
	for _, s := range segs {
		total += len(s)
	}
	if n < 1 || len(r) < total || (len(r)-total)%n != 0 {
		return "", false
	}
	l := (len(r) - total) / n
	v := r[len(segs[0]) : len(segs[0])+l]
	return v, strings.Join(segs, v) == r
}

type span struct {
	start, end int
	expr       string
}

// stringExpr explains the string r as literal text and the variables
// deps, or reports that it cannot.
func (t *tracer) stringExpr(r string, deps []string, probes []probe) (string, bool) {
	var spans []span
	for _, k := range deps {
		mk := find(probes, k, probeMarker)
		if mk == nil || mk.kind != kString || !strings.Contains(mk.str, markerString(t.index[k])) {
			return "", false
		}
		segs := strings.Split(mk.str, markerString(t.index[k]))
		v, ok := solve(segs, r)
		if !ok {
			return "", false
		}
		use, def := useRequired, ""
		if un := find(probes, k, probeUnset); un != nil {
			if un.kind != kString {
				return "", false
			}
			if def, ok = solve(segs, un.str); !ok {
				return "", false
			}
			use = usePresence
			if em := find(probes, k, probeEmpty); em != nil && def != "" {
				switch {
				case em.kind == kString && em.str == strings.Join(segs, ""):
				case em.kind == kString && em.str == strings.Join(segs, def):
					use = useTruthy
				default:
					return "", false
				}
			}
		}
		if want, ok := t.expected(k, use, def); !ok || want != v {
			return "", false
		}
		expr := t.varExpr(k, use, def)
		pos := len(segs[0])
		for i := 1; i < len(segs); i++ {
			spans = append(spans, span{pos, pos + len(v), expr})
			pos += len(v) + len(segs[i])
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	var parts []string
	pos := 0
	for _, s := range spans {
		if s.start < pos {
			return "", false // two variables claim the same text
		}
		if s.start > pos {
			parts = append(parts, jsonnetString(r[pos:s.start]))
		}
		parts = append(parts, s.expr)
		pos = s.end
	}
	if pos < len(r) {
		parts = append(parts, jsonnetString(r[pos:]))
	}
	return strings.Join(parts, " + "), true
}

var intRE = regexp.MustCompile(`^-?[0-9]+$`)

// numberExpr explains the number r (JavaScript text) as the variable k
// parsed as an integer.
func (t *tracer) numberExpr(r, k string, probes []probe) (string, bool) {
	nm := find(probes, k, probeNumber)
	if nm == nil || nm.kind != kNumber || nm.str != strconv.Itoa(markerNumber(t.index[k])) {
		return "", false
	}
	use, def := useRequired, ""
	if un := find(probes, k, probeUnset); un != nil {
		if un.kind != kNumber || !intRE.MatchString(un.str) {
			return "", false
		}
		use, def = usePresence, un.str
		if em := find(probes, k, probeEmpty); em != nil && equal(em, un) {
			use = useTruthy
		}
	}
	want, ok := t.expected(k, use, def)
	if !ok || !intRE.MatchString(want) {
		return "", false
	}
	if n, err := strconv.ParseInt(want, 10, 64); err != nil || strconv.FormatInt(n, 10) != r {
		return "", false
	}
	return "std.parseInt(" + t.varExpr(k, use, def) + ")", true
}

// expected is the text the variable contributes under the real
// environment, as the use describes it.
func (t *tracer) expected(k string, use varUse, def string) (string, bool) {
	v, set := t.env[k]
	switch use {
	case useRequired:
		return v, set
	case useTruthy:
		if set && v != "" {
			return v, true
		}
		return def, true
	}
	if set {
		return v, true
	}
	return def, true
}

func (t *tracer) varExpr(k string, use varUse, def string) string {
	switch use {
	case useRequired:
		if identRE.MatchString(k) && !jsonnetKeyword(k) {
			return "env." + k
		}
		return "env[" + jsonnetString(k) + "]"
	case useTruthy:
		t.plan.usesOr = true
		return fmt.Sprintf("envOr(%s, %s)", jsonnetString(k), jsonnetString(def))
	}
	return fmt.Sprintf("std.get(env, %s, %s)", jsonnetString(k), jsonnetString(def))
}
