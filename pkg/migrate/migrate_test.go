package migrate

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLexKeepsSyntaxOutOfStringsAndComments(t *testing.T) {
	src := "const a = 'export default 1' // import x from 'y'\n" +
		"const b = `export ${ {x: '}'}.x } import` / 2 / 1\n" +
		"const re = /export\\/[/]default/g\n" +
		"/* export { a } */ export default { a, b, re }\n"
	toks, err := lex(src)
	if err != nil {
		t.Fatal(err)
	}
	var exports, imports int
	for _, tk := range toks {
		if tk.kind == tIdent && tk.text == "export" {
			exports++
		}
		if tk.kind == tIdent && tk.text == "import" {
			imports++
		}
	}
	if exports != 1 || imports != 0 {
		t.Errorf("found %d export and %d import tokens outside strings, templates, regexps and comments; want 1 and 0", exports, imports)
	}
	if !isESM(toks) {
		t.Error("not taken for an ES module")
	}
}

func TestTransformESM(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"default", "export default {a: 1}", "__rb_exports.default = {a: 1}\n;"},
		{"imports", "import a, {b as c, d} from './x.js'\nimport * as ns from \"./y.js\"\nimport './z.js'",
			"const __rb_m1 = __rb_import(\"./x.js\"), a = __rb_m1.default, c = __rb_m1[\"b\"], d = __rb_m1[\"d\"];\n" +
				"const __rb_m2 = __rb_import(\"./y.js\"), ns = __rb_m2;\n__rb_import(\"./z.js\");\n;"},
		{"named", "export const x = 1\nexport async function f() {}\nconst y = 2\nexport { y as z }",
			"const x = 1\nasync function f() {}\nconst y = 2\n\n;__rb_exports[\"x\"] = x;__rb_exports[\"f\"] = f;__rb_exports[\"z\"] = y;"},
		{"meta", "export default import.meta.dirname", "__rb_exports.default = __rb_meta.dirname\n;"},
		{"lines kept", "import {\n  a\n} from './x.js'\nexport default a", "const __rb_m1 = __rb_import(\"./x.js\"), a = __rb_m1[\"a\"];\n\n\n__rb_exports.default = a\n;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toks, err := lex(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := transformESM(tc.src, toks)
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
}

// migrateSrc writes src as rollbridge.js and migrates it with env.
func migrateSrc(t *testing.T, src string, env map[string]string) *Result {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shop")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "rollbridge.js")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Migrate(context.Background(), Options{Path: p, Env: env, OutPath: filepath.Join(dir, "rollbridge.jsonnet")})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestEnvTracing(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		env        map[string]string
		want       string
	}{
		{"or", "process.env.A || 'x'", nil, "v: envOr('A', 'x'),"},
		{"nullish", "process.env.A ?? 'x'", map[string]string{"A": ""}, "v: std.get(env, 'A', 'x'),"},
		{"required", "process.env.A.length ? process.env.A : 'never'", map[string]string{"A": "set"}, "v: env.A,"},
		{"transformed", "process.env.A.toUpperCase()", map[string]string{"A": "set"}, ""},
		{"concatenation", "`${process.env.H || 'localhost'}:${process.env.P ?? 80}/x`", map[string]string{"P": "81"},
			"v: envOr('H', 'localhost') + ':' + std.get(env, 'P', '80') + '/x',"},
		// JavaScript writes an unset variable as "undefined", and so does the translation.
		{"twice", "process.env.A + '-' + process.env.A", map[string]string{"A": "a"}, "v: std.get(env, 'A', 'undefined') + '-' + std.get(env, 'A', 'undefined'),"},
		{"number", "Number(process.env.N || 3000)", nil, "v: std.parseInt(envOr('N', '3000')),"},
		{"parseInt", "parseInt(process.env.N ?? '7', 10)", map[string]string{"N": "12"}, "v: std.parseInt(std.get(env, 'N', '7')),"},
		{"odd name", "process.env['my-var'] ?? 'd'", nil, "v: std.get(env, 'my-var', 'd'),"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := migrateSrc(t, "export default { v: "+tc.expr+" }", tc.env)
			got := string(res.Jsonnet)
			if tc.want == "" {
				if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0].Message, "cannot express") {
					t.Errorf("warnings %v, want one that the value cannot be expressed\n%s", res.Warnings, got)
				}
				return
			}
			if len(res.Warnings) > 0 || !strings.Contains(got, "\n  "+tc.want+"\n") || !strings.Contains(got, "local env = std.extVar('env');") {
				t.Errorf("warnings %v\n%s\nwant the line %q", res.Warnings, got, tc.want)
			}
		})
	}
}

func TestNoEnvNoExtVar(t *testing.T) {
	res := migrateSrc(t, "const unused = process.env.HOME\nexport default { v: 1 }", map[string]string{"HOME": "/root"})
	if strings.Contains(string(res.Jsonnet), "extVar") || len(res.Unused) != 1 || res.Unused[0] != "HOME" {
		t.Errorf("unused %v\n%s", res.Unused, res.Jsonnet)
	}
}

func TestCommentsPlaced(t *testing.T) {
	res := migrateSrc(t, `// header
const helper = 1 // not placed: no field here
export default {
  // leading
  a: 1, // trailing
  b: { /* block */ c: [ // first element's first field
    { d: 2 } ] },
}
`, nil)
	got := string(res.Jsonnet)
	for _, want := range []string{"// header\n\n// Translated", "  // leading\n  a: 1,  // trailing\n", "    /* block */\n    c: [",
		"      {\n        // first element's first field\n        d: 2,"} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
	if len(res.UnplacedComments) != 1 || res.UnplacedComments[0] != 2 {
		t.Errorf("unplaced %v, want line 2", res.UnplacedComments)
	}
}

func TestJsonnetStringAndKeys(t *testing.T) {
	res := migrateSrc(t, `export default { "a-b": "it's \\ \n\t\u0001", local: true, "x y": null, n: [1.5, -0, 1e21] }`, nil)
	for _, want := range []string{`'a-b': 'it\'s \\ \n\t\u0001',`, `'local': true,`, `'x y': null,`, `n: [1.5, 0, 1e+21],`} {
		if !strings.Contains(string(res.Jsonnet), want) {
			t.Errorf("lacks %q:\n%s", want, res.Jsonnet)
		}
	}
}

// TestRunawayModuleStops: a module that never returns is interrupted when
// the time is up, with an error that says so.
func TestRunawayModuleStops(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rollbridge.js")
	if err := os.WriteFile(p, []byte("export default (() => { for (;;) {} })()"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Migrate(context.Background(), Options{Path: p, Timeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "the evaluation took longer than 100ms") {
		t.Errorf("got %v, want the time limit", err)
	}
}

// FuzzLexTransform: any source must lex and transform without a panic.
func FuzzLexTransform(f *testing.F) {
	for _, s := range []string{"export default {a: `x${ {b: '}'} }y`}", "import a, {b as c} from './x'", "a / b / c", "/[/]/.test(x)",
		"export { a as default } from './y.js'", "`${", "/*", "'\\", "import.meta", "export async function"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		toks, err := lex(src)
		if err != nil {
			return
		}
		if isESM(toks) {
			_, _ = transformESM(src, toks)
		}
		_ = placeComments(toks, &node{kind: kObject})
	})
}
