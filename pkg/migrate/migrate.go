package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// DefaultTimeout bounds all evaluations of one migration together.
const DefaultTimeout = 30 * time.Second

// Options says what to migrate.
type Options struct {
	// Path is the JavaScript config module.
	Path string
	// Env is process.env: the real environment plus any overrides.
	Env map[string]string
	// OutPath is where the Jsonnet file will be written. Its directory
	// matters: an application left out of the config defaults to the
	// name of the config's directory, so when the directories' names
	// differ the Jsonnet file names the application explicitly.
	OutPath string
	// Timeout bounds the evaluations together; 0 means DefaultTimeout.
	Timeout time.Duration
	// Console receives the module's console output from its evaluation
	// under the real environment; nil discards it.
	Console io.Writer
}

// Result is a translation. Warnings list what could not be carried over;
// a translation with warnings still evaluates, but differs from the
// original where they say.
type Result struct {
	// Jsonnet is the translated file.
	Jsonnet []byte
	// Value is the evaluated JavaScript config as JSON text: what the
	// original daemon would have loaded. config.Decode of it is the
	// normalised config the Jsonnet file must match.
	Value []byte
	// EnvVars are the process.env names the module read, sorted.
	EnvVars []string
	// Warnings, in field order.
	Warnings []Warning
	// Unused are variables the module read although no field was seen to
	// depend on them. The probes cannot see every use: a comparison with
	// one particular value (process.env.X === "1") looks like no use unless
	// the current environment has that value. Check these by hand.
	Unused []string
	// UnplacedComments are the lines of the entry module's comments that
	// have no place in the Jsonnet file and were left out.
	UnplacedComments []int
}

// Migrate evaluates the config module and translates it. An error means
// there is no translation: the module does not load, throws, or does not
// produce an object.
func Migrate(ctx context.Context, opts Options) (*Result, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("the evaluation took longer than %s", timeout))
	defer cancel()
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", opts.Path, err)
	}
	env := opts.Env
	if env == nil {
		env = map[string]string{}
	}
	r, l, warnings, err := evaluateTree(ctx, abs, env, opts.Console)
	if err != nil {
		return nil, fmt.Errorf("evaluate %s: %w", opts.Path, err)
	}
	if r.kind != kObject {
		return nil, fmt.Errorf("evaluate %s: the config is %s, not an object", opts.Path, kindName(r.kind))
	}
	res := &Result{Value: r.JSON()}
	for k := range l.env.reads {
		res.EnvVars = append(res.EnvVars, k)
	}
	sort.Strings(res.EnvVars)

	plan := &envPlan{exprs: map[string]string{}, optional: map[string]string{}, used: map[string]bool{}}
	switch {
	case l.env.enumerated:
		res.Warnings = append(res.Warnings, Warning{Message: "the config lists every variable of process.env (Object.keys, a spread, a for-in); values that depend on it are written as they are now"})
	case len(res.EnvVars) > maxTracedVars:
		res.Warnings = append(res.Warnings, Warning{Message: fmt.Sprintf("the config reads %d variables of process.env, more than the %d the migration traces; values that depend on them are written as they are now", len(res.EnvVars), maxTracedVars)})
	case len(res.EnvVars) > 0:
		t := &tracer{env: env, index: map[string]int{}, plan: plan}
		for i, k := range res.EnvVars {
			t.index[k] = i
		}
		envs, probes := probeEnvs(env, res.EnvVars)
		for i, e := range envs {
			tree, _, _, err := evaluateTree(ctx, abs, e, nil)
			if ctx.Err() != nil {
				return nil, fmt.Errorf("evaluate %s: %w", opts.Path, context.Cause(ctx))
			}
			if err == nil {
				probes[i].tree = tree // a failing probe says the module needs the variable
			}
		}
		t.trace(r, probes, nil)
		for k := range plan.optional {
			plan.used[plan.optional[k]] = true
		}
		res.Warnings = append(res.Warnings, plan.warnings...)
		for _, k := range res.EnvVars {
			if !plan.used[k] {
				res.Unused = append(res.Unused, k)
			}
		}
	}
	res.Warnings = append(warnings, res.Warnings...)

	pl := placeComments(l.entryToks, r)
	res.UnplacedComments = pl.unplaced
	w := &jsonnetWriter{exprs: plan.exprs, optional: plan.optional, comments: pl.fields, left: map[string][]string{}}
	for _, wn := range warnings {
		if wn.left && len(wn.at) > 0 {
			parent := pathString(wn.at[:len(wn.at)-1])
			w.left[parent] = append(w.left[parent], fmt.Sprintf("migrate: %v was left out: %s", wn.at[len(wn.at)-1], wn.Message))
		}
	}
	octalMode(r, plan.exprs)
	if r.get("application") == nil && opts.OutPath != "" {
		outAbs, err := filepath.Abs(opts.OutPath)
		if err == nil && filepath.Base(filepath.Dir(outAbs)) != filepath.Base(filepath.Dir(abs)) {
			name := filepath.Base(filepath.Dir(abs))
			r.fields = append([]field{{"application", &node{kind: kString, str: name}}}, r.fields...)
			w.comments["application"] = &fieldComments{leading: []string{
				"// The original defaulted the application to the name of its config's directory."}}
		}
	}

	// The module's header comments, then what the translation defines, then
	// the config.
	for _, h := range pl.header {
		w.comment(h, "")
	}
	if len(pl.header) > 0 {
		w.b.WriteString("\n")
	}
	fmt.Fprintf(&w.b, "// Translated from %s by `rollbridgectl config migrate`.\n", filepath.Base(abs))
	if plan.usesEnv {
		w.b.WriteString("local env = std.extVar('env');\n")
	}
	if plan.usesOr {
		w.b.WriteString("// process.env.NAME || default: an empty value counts as unset.\n")
		w.b.WriteString("local envOr(name, default) = local v = std.get(env, name, ''); if v == '' then default else v;\n")
	}
	w.b.WriteString("\n")
	w.value(r, nil, "")
	w.b.WriteString("\n")
	res.Jsonnet = []byte(w.b.String())
	return res, nil
}

// octalMode writes a numeric control.mode the way its author wrote it
// (0o660), as std.parseOctal('660').
func octalMode(r *node, exprs map[string]string) {
	c := r.get("control")
	if c == nil || c.kind != kObject {
		return
	}
	m := c.get("mode")
	if m == nil || m.kind != kNumber {
		return
	}
	if _, ok := exprs["control.mode"]; ok {
		return
	}
	f, err := strconv.ParseFloat(m.str, 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f > 0o7777 {
		return
	}
	exprs["control.mode"] = fmt.Sprintf("std.parseOctal('%o')", int(f))
}

func kindName(k nodeKind) string {
	return [...]string{"null", "a boolean", "a number", "a string", "an array", "an object"}[k]
}

// evaluateTree evaluates the module and converts its value.
func evaluateTree(ctx context.Context, path string, env map[string]string, console io.Writer) (*node, *loader, []Warning, error) {
	v, l, err := evaluate(ctx, path, env, console)
	if err != nil {
		return nil, nil, nil, err
	}
	c := newConverter(l.rt)
	n, err := c.convert(v, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	if n == nil {
		return nil, nil, nil, errors.New("the config value is not JSON data")
	}
	return n, l, c.warnings, nil
}
