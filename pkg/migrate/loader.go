package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dop251/goja"
)

// envObject is process.env: the environment given to one evaluation. It
// records every name the module looks up, present or not, because each
// such name is a place where the translation must read std.extVar('env').
type envObject struct {
	vals       map[string]string
	reads      map[string]bool
	enumerated bool // Object.keys(process.env) or the like: every name counts as read
	rt         *goja.Runtime
}

func (e *envObject) Get(key string) goja.Value {
	e.reads[key] = true
	if v, ok := e.vals[key]; ok {
		return e.rt.ToValue(v)
	}
	return nil
}

func (e *envObject) Set(key string, val goja.Value) bool {
	e.vals[key] = val.String() // Node stores every value as a string
	return true
}

func (e *envObject) Has(key string) bool {
	e.reads[key] = true
	_, ok := e.vals[key]
	return ok
}

func (e *envObject) Delete(key string) bool {
	delete(e.vals, key)
	return true
}

func (e *envObject) Keys() []string {
	e.enumerated = true
	keys := make([]string, 0, len(e.vals))
	for k := range e.vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// module is one loaded file. ns is what an import sees (its exports, or
// for CommonJS its module.exports as default plus its own properties);
// cjs is what require sees.
type module struct {
	ns  *goja.Object
	cjs goja.Value
	esm bool
}

// loader evaluates one config module and the local modules it loads, in
// one runtime.
type loader struct {
	rt      *goja.Runtime
	env     *envObject
	modules map[string]*module
	log     io.Writer
	// tokens of the entry file, kept for comment placement
	entryToks []token
	entrySrc  string
}

// errNoDefault says the entry module has no default export.
var errNoDefault = errors.New("the module must export a default config object or function (export default ... or module.exports = ...)")

// evaluate loads the module at path with env as process.env and returns
// the config value: the default export (or module.exports), called when it
// is a function, its promise awaited. log receives console output (nil:
// discarded). The runtime is interrupted when ctx ends.
func evaluate(ctx context.Context, path string, env map[string]string, log io.Writer) (goja.Value, *loader, error) {
	rt := goja.New()
	vals := make(map[string]string, len(env))
	for k, v := range env {
		vals[k] = v
	}
	l := &loader{rt: rt, modules: map[string]*module{}, log: log}
	l.env = &envObject{vals: vals, reads: map[string]bool{}, rt: rt}
	if log == nil {
		l.log = io.Discard
	}
	stop := context.AfterFunc(ctx, func() { rt.Interrupt(fmt.Errorf("evaluation stopped: %w", context.Cause(ctx))) })
	defer stop()
	if err := l.globals(path); err != nil {
		return nil, nil, err
	}
	v, err := l.run(path)
	if err != nil {
		return nil, nil, err
	}
	return v, l, nil
}

func (l *loader) run(path string) (v goja.Value, err error) {
	m, err := l.load(path)
	if err != nil {
		return nil, err
	}
	exported := m.cjs
	if m.esm {
		exported = m.ns.Get("default")
	}
	if exported == nil || goja.IsUndefined(exported) {
		return nil, errNoDefault
	}
	if fn, ok := goja.AssertFunction(exported); ok {
		if exported, err = fn(goja.Undefined()); err != nil {
			return nil, jsError("call the exported config function", err)
		}
	}
	if p, ok := exported.Export().(*goja.Promise); ok {
		switch p.State() {
		case goja.PromiseStateFulfilled:
			exported = p.Result()
		case goja.PromiseStateRejected:
			return nil, fmt.Errorf("the exported config function's promise was rejected: %s", describeJS(p.Result()))
		default:
			return nil, errors.New("the exported config function's promise never settled (the evaluation has no timers or I/O)")
		}
	}
	return exported, nil
}

// jsError words an engine error: a JavaScript exception with its message
// and location, or an interruption.
func jsError(op string, err error) error {
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		if e, ok := ie.Value().(error); ok {
			return fmt.Errorf("%s: %w", op, e)
		}
	}
	var ex *goja.Exception
	if errors.As(err, &ex) {
		return fmt.Errorf("%s: %s", op, strings.TrimSpace(ex.Error()))
	}
	return fmt.Errorf("%s: %w", op, err)
}

func describeJS(v goja.Value) string {
	if o, ok := v.(*goja.Object); ok {
		if s := o.Get("stack"); s != nil && !goja.IsUndefined(s) {
			return s.String()
		}
	}
	return v.String()
}

// globals installs process and console. Nothing else of Node exists:
// no timers, no Buffer, no I/O.
func (l *loader) globals(entry string) error {
	rt := l.rt
	cwd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("read the working directory: %w", err)
	}
	process := rt.NewObject()
	for k, v := range map[string]any{
		"env":      rt.NewDynamicObject(l.env),
		"platform": "linux",
		"argv":     []any{"node", entry},
		"cwd":      func() string { return cwd },
	} {
		if err := process.Set(k, v); err != nil {
			return err
		}
	}
	console := rt.NewObject()
	print := func(call goja.FunctionCall) goja.Value {
		parts := make([]string, len(call.Arguments))
		for i, a := range call.Arguments {
			parts[i] = a.String()
		}
		fmt.Fprintln(l.log, strings.Join(parts, " "))
		return goja.Undefined()
	}
	for _, k := range []string{"log", "info", "warn", "error", "debug"} {
		if err := console.Set(k, print); err != nil {
			return err
		}
	}
	if err := rt.Set("process", process); err != nil {
		return err
	}
	return rt.Set("console", console)
}

// resolve finds the file a relative specifier names, the way Node does for
// local files: as given, then with .js, .mjs, .cjs, .json, then as a
// directory's index.js.
func resolve(from, spec string) (string, error) {
	if !strings.HasPrefix(spec, "./") && !strings.HasPrefix(spec, "../") && !strings.HasPrefix(spec, "/") && !strings.HasPrefix(spec, "file:") {
		return "", fmt.Errorf("cannot load %q: only local config modules (a relative path such as \"./shared.js\") can be imported; packages and Node built-ins are not available", spec)
	}
	if strings.HasPrefix(spec, "file:") {
		u, err := url.Parse(spec)
		if err != nil {
			return "", fmt.Errorf("cannot load %q: %w", spec, err)
		}
		spec = u.Path
	}
	base := spec
	if !filepath.IsAbs(base) {
		base = filepath.Join(filepath.Dir(from), spec)
	}
	for _, cand := range []string{base, base + ".js", base + ".mjs", base + ".cjs", base + ".json", filepath.Join(base, "index.js")} {
		if st, err := os.Stat(cand); err == nil && st.Mode().IsRegular() {
			return cand, nil
		}
	}
	return "", fmt.Errorf("cannot load %q from %s: no such file", spec, from)
}

// load evaluates the file at path once; later loads share the result. A
// module that is still loading (an import cycle) gives what it exported
// so far, as CommonJS does.
func (l *loader) load(path string) (*module, error) {
	if m, ok := l.modules[path]; ok {
		return m, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	src := strings.TrimPrefix(string(data), "#!") // a shebang line stays a comment-like line
	if len(src) != len(data) {
		src = "//" + src
	}
	rt := l.rt
	m := &module{ns: rt.NewObject()}
	l.modules[path] = m
	if strings.HasSuffix(path, ".json") {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		parsed, err := rt.RunString("(" + string(data) + ")")
		if err != nil {
			return nil, jsError("parse "+path, err)
		}
		m.cjs = parsed
		return m, m.ns.Set("default", parsed)
	}
	toks, err := lex(src)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(l.modules) == 1 {
		l.entryToks, l.entrySrc = toks, src
	}
	m.esm = strings.HasSuffix(path, ".mjs") || !strings.HasSuffix(path, ".cjs") && isESM(toks)
	dirname := filepath.Dir(path)
	if m.esm {
		body, err := transformESM(src, toks)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		fn, err := l.compile(path, "(function (__rb_exports, __rb_import, __rb_meta) {\"use strict\";"+body+"\n})")
		if err != nil {
			return nil, err
		}
		meta := rt.NewObject()
		_ = meta.Set("url", (&url.URL{Scheme: "file", Path: path}).String()) // setting a plain property cannot fail
		_ = meta.Set("filename", path)
		_ = meta.Set("dirname", dirname)
		if _, err := fn(goja.Undefined(), m.ns, rt.ToValue(l.importer(path)), meta); err != nil {
			return nil, jsError("evaluate "+path, err)
		}
		m.cjs = m.ns
		return m, nil
	}
	fn, err := l.compile(path, "(function (exports, require, module, __filename, __dirname) {"+src+"\n})")
	if err != nil {
		return nil, err
	}
	modObj := rt.NewObject()
	exports := rt.NewObject()
	_ = modObj.Set("exports", exports)
	m.cjs = exports
	require := func(call goja.FunctionCall) goja.Value {
		dep := l.require(path, call.Argument(0).String())
		if dep.esm {
			return dep.ns
		}
		return dep.cjs
	}
	if _, err := fn(goja.Undefined(), exports, rt.ToValue(require), modObj, rt.ToValue(path), rt.ToValue(dirname)); err != nil {
		return nil, jsError("evaluate "+path, err)
	}
	m.cjs = modObj.Get("exports")
	// What an import of a CommonJS module sees: module.exports as the
	// default, and its own properties as named exports.
	_ = m.ns.Set("default", m.cjs)
	if o, ok := m.cjs.(*goja.Object); ok {
		for _, k := range o.Keys() {
			if k != "default" {
				_ = m.ns.Set(k, o.Get(k))
			}
		}
	}
	return m, nil
}

func (l *loader) compile(path, src string) (goja.Callable, error) {
	prg, err := goja.Compile(path, src, false)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %s", path, strings.TrimSpace(err.Error()))
	}
	v, err := l.rt.RunProgram(prg)
	if err != nil {
		return nil, jsError("evaluate "+path, err)
	}
	fn, ok := goja.AssertFunction(v)
	if !ok {
		return nil, fmt.Errorf("evaluate %s: the module wrapper is not a function", path)
	}
	return fn, nil
}

// require loads a dependency from inside a running module; failures are
// thrown into the module as JavaScript errors, so its try/catch sees them.
func (l *loader) require(from, spec string) *module {
	p, err := resolve(from, spec)
	if err != nil {
		panic(l.rt.NewGoError(err))
	}
	m, err := l.load(p)
	if err != nil {
		panic(l.rt.NewGoError(err))
	}
	return m
}

func (l *loader) importer(from string) func(string) *goja.Object {
	return func(spec string) *goja.Object { return l.require(from, spec).ns }
}
