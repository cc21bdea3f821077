package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The migration tests run the built rollbridgectl, as a user does: the
// JavaScript evaluation, the Jsonnet child evaluation and the exit code
// are the binary's own.

var (
	migrateBinOnce sync.Once
	migrateBin     string
	migrateBinErr  error
)

// ctlBinary builds rollbridgectl once for all migration tests.
func ctlBinary(t *testing.T) string {
	t.Helper()
	migrateBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rbmig")
		if err != nil {
			migrateBinErr = err
			return
		}
		migrateBin = filepath.Join(dir, "rollbridgectl")
		if out, err := exec.Command("go", "build", "-o", migrateBin, ".").CombinedOutput(); err != nil {
			migrateBinErr = errors.New(string(out))
		}
	})
	if migrateBinErr != nil {
		t.Fatalf("build rollbridgectl: %v", migrateBinErr)
	}
	return migrateBin
}

// removeCtlBinary deletes what ctlBinary built; TestMain calls it after
// every test has run.
func removeCtlBinary() {
	if migrateBin != "" {
		_ = os.RemoveAll(filepath.Dir(migrateBin)) // a temp dir of our own
	}
}

// ctlExec runs the binary in dir with extra environment variables.
func ctlExec(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(ctlBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run rollbridgectl: %v", err)
	}
	return o.String(), e.String(), code
}

// appDir writes files into a fresh directory named app (the default
// application of a config without one is its directory's name).
func appDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mustMigrate runs config migrate on rollbridge.js in dir and expects
// success, then validates the result with rollbridgectl validate.
func mustMigrate(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	out, errOut, code := ctlExec(t, dir, env, append([]string{"config", "migrate", "rollbridge.js"}, args...)...)
	if code != 0 || !strings.Contains(out, "equivalent: ") {
		t.Fatalf("migrate: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if out, errOut, code := ctlExec(t, dir, env, "validate", "-c", "rollbridge.jsonnet"); code != 0 {
		t.Fatalf("validate the migrated file: exit %d\n%s%s", code, out, errOut)
	}
	return readFile(t, filepath.Join(dir, "rollbridge.jsonnet"))
}

func TestMigrateSpecExample(t *testing.T) {
	src := readFile(t, "testdata/migrate/tensorbuzz.com.js") // the spec's example: the repository must test without ../shared
	dir := appDir(t, map[string]string{"rollbridge.js": src})
	got := mustMigrate(t, dir, nil)
	for _, want := range []string{
		"// Rollbridge config for the TensorBuzz production backend.\n",
		"// background worker per active release.\n",
		"{\n  application: 'tensorbuzz',\n  control: {\n    path: '/tmp/rollbridge-tensorbuzz.sock',\n  },\n  proxy: {\n    host: '127.0.0.1',\n    port: 4500,\n",
		"      id: 'background-jobs-main',\n      policy: 'service',\n",
		"      VELOCIOUS_BACKGROUND_JOBS_PORT: '{{ports.background-jobs-main}}',\n",
		"      port: {\n        from: 14500,\n        to: 14599,\n      },\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("migrated file lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "extVar") {
		t.Errorf("the example reads no environment, yet the translation does:\n%s", got)
	}
	// The committed translation of the same example is equivalent too.
	example, err := filepath.Abs("../../examples/tensorbuzz.jsonnet")
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := ctlExec(t, dir, nil, "config", "migrate", "rollbridge.js", "--compare", example); code != 0 {
		t.Fatalf("compare with examples/tensorbuzz.jsonnet: exit %d\n%s%s", code, out, errOut)
	}
}

func TestMigrateExportForms(t *testing.T) {
	const obj = `{application: "shop", proxy: {port: 8180}, processes: [{id: "web", policy: "proxied", command: "bin/web {{port}}", port: 18000}]}`
	for _, tc := range []struct{ name, src string }{
		{"esm object", "export default " + obj},
		{"esm arrow", "export default () => (" + obj + ")"},
		{"esm async function", "export default async function () { await null; return " + obj + " }"},
		{"esm named then default", "const config = " + obj + "\nexport { config as default }"},
		{"commonjs object", "module.exports = " + obj},
		{"commonjs function", "module.exports = function () { return " + obj + " }"},
		{"commonjs async arrow", "module.exports = async () => (" + obj + ")"},
		{"commonjs exports property", "exports.application = 'shop'; exports.proxy = {port: 8180}; exports.processes = [{id: 'web', policy: 'proxied', command: 'bin/web {{port}}', port: 18000}]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := appDir(t, map[string]string{"rollbridge.js": tc.src})
			got := mustMigrate(t, dir, nil)
			if !strings.Contains(got, "  application: 'shop',\n  proxy: {\n    port: 8180,\n  },\n  processes: [\n") {
				t.Errorf("fields not in the module's order:\n%s", got)
			}
		})
	}
}

const envConfig = `// Shop, on any host.
const name = process.env.APP_NAME || "shop"

export default async () => ({
  application: name, // one per host
  control: { path: ` + "`/run/rollbridge/${name}.sock`" + `, mode: 0o660 },
  proxy: { port: Number(process.env.PORT ?? 8180) },
  processes: [{
    // the web server
    id: "web",
    policy: "proxied",
    command: "bin/web --port {{port}}",
    port: { from: 18000, to: 18099 },
    env: { DATABASE_URL: process.env.DATABASE_URL, RAILS_ENV: process.env.RAILS_ENV ?? "production" },
  }],
})
`

func TestMigrateProcessEnv(t *testing.T) {
	t.Run("from the environment", func(t *testing.T) {
		dir := appDir(t, map[string]string{"rollbridge.js": envConfig})
		got := mustMigrate(t, dir, []string{"APP_NAME=", "PORT=9000", "DATABASE_URL=postgres://db", "RAILS_ENV=staging"})
		for _, want := range []string{
			"local env = std.extVar('env');\n",
			"  application: envOr('APP_NAME', 'shop'),  // one per host\n",
			"    path: '/run/rollbridge/' + envOr('APP_NAME', 'shop') + '.sock',\n",
			"    mode: std.parseOctal('660'),\n",
			"    port: std.parseInt(std.get(env, 'PORT', '8180')),\n",
			"      // the web server\n      id: 'web',\n      policy: 'proxied',\n",
			"        [if std.objectHas(env, 'DATABASE_URL') then 'DATABASE_URL']: env.DATABASE_URL,\n",
			"        RAILS_ENV: std.get(env, 'RAILS_ENV', 'production'),\n",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("migrated file lacks %q:\n%s", want, got)
			}
		}
		// The translation holds under another environment as well.
		out, errOut, code := ctlExec(t, dir, []string{"APP_NAME=other", "PORT=9001", "RAILS_ENV=dev", "DATABASE_URL="}, "config", "migrate", "rollbridge.js", "--compare", "rollbridge.jsonnet")
		if code != 0 {
			t.Fatalf("compare under another environment: exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("with --env", func(t *testing.T) {
		dir := appDir(t, map[string]string{"rollbridge.js": envConfig})
		out, errOut, code := ctlExec(t, dir, []string{"APP_NAME=fromenv"}, "config", "migrate", "rollbridge.js", "--env", "APP_NAME=flag", "-o", "out.jsonnet", "--env", "PORT=9100")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		// --env wins over the environment, for the module and for std.extVar('env').
		res, errOut, code := ctlExec(t, dir, []string{"APP_NAME=flag", "PORT=9100"}, "validate", "--json", "-c", "out.jsonnet")
		if code != 0 || !strings.Contains(res, `"application": "flag"`) || !strings.Contains(res, `"port": 9100`) {
			t.Errorf("validate: exit %d\n%s%s", code, res, errOut)
		}
	})
	t.Run("a value the probes cannot explain", func(t *testing.T) {
		dir := appDir(t, map[string]string{"rollbridge.js": `export default {
  proxy: { port: 8180 },
  processes: [{ id: "web", policy: "proxied", command: "bin/web", port: 18000, replicas: process.env.BIG ? 1 : 1, env: { MODE: (process.env.MODE || "x").toUpperCase() } }],
}`})
		out, errOut, code := ctlExec(t, dir, []string{"MODE=fast"}, "config", "migrate", "rollbridge.js")
		if code != 1 || !strings.Contains(errOut, "warning: processes[0].env.MODE: it depends on process.env.MODE in a way the migration cannot express") ||
			!strings.Contains(out, "equivalent: ") {
			t.Errorf("exit %d, want 1 with a warning\n%s%s", code, out, errOut)
		}
		if !strings.Contains(readFile(t, filepath.Join(dir, "rollbridge.jsonnet")), "MODE: 'FAST',") {
			t.Errorf("the value under the current environment is not written")
		}
		if !strings.Contains(errOut, "note: no field was seen to depend on process.env BIG") {
			t.Errorf("no note about BIG:\n%s", errOut)
		}
	})
}

func TestMigrateLocalImports(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"esm import", map[string]string{
			"rollbridge.js": `import shared, { web as makeWeb } from "./lib/shared.js"
import * as ports from "./ports.mjs"
export default { ...shared, proxy: { port: ports.PROXY }, processes: [makeWeb("bin/web")] }`,
			"lib/shared.js": `export default { application: "shop" }
export function web(command) { return { id: "web", policy: "proxied", command, port: 18000 } }`,
			"ports.mjs": `export const PROXY = 8180`,
		}},
		{"commonjs require", map[string]string{
			"rollbridge.js": `const { web } = require("./lib/shared")
const data = require("./data.json")
module.exports = { application: data.name, proxy: { port: data.port }, processes: [web("bin/web")] }`,
			"lib/shared.js": `exports.web = (command) => ({ id: "web", policy: "proxied", command, port: 18000 })`,
			"data.json":     `{"name": "shop", "port": 8180}`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := appDir(t, nil)
			for name, src := range tc.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got := mustMigrate(t, dir, nil)
			if !strings.Contains(got, "application: 'shop'") || !strings.Contains(got, "command: 'bin/web'") {
				t.Errorf("imported values missing:\n%s", got)
			}
		})
	}
}

func TestMigrateUntranslatable(t *testing.T) {
	dir := appDir(t, map[string]string{"rollbridge.js": `export default {
  proxy: { port: 8180, onError() { return 1 } },
  processes: [{ id: "web", policy: "proxied", command: "bin/web", port: 18000, env: { BUILT: new Date(0) } }],
}`})
	out, errOut, code := ctlExec(t, dir, nil, "config", "migrate", "rollbridge.js")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"warning: proxy.onError: a function cannot be translated to Jsonnet",
		"warning: processes[0].env.BUILT: a Date is not JSON data; written as JSON.stringify writes it (\"1970-01-01T00:00:00.000Z\")",
		"2 warnings: ",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	got := readFile(t, filepath.Join(dir, "rollbridge.jsonnet"))
	if !strings.Contains(got, "// migrate: onError was left out: a function cannot be translated") {
		t.Errorf("no note in the file:\n%s", got)
	}
	// The file is written and loads, for the user to finish.
	if _, errOut, code := ctlExec(t, dir, nil, "validate", "-c", "rollbridge.jsonnet"); code != 0 {
		t.Errorf("validate: exit %d: %s", code, errOut)
	}
}

func TestMigrateEquivalenceFailure(t *testing.T) {
	dir := appDir(t, map[string]string{
		"rollbridge.js": `module.exports = { proxy: { port: 8180 }, processes: [{ id: "web", policy: "proxied", command: "bin/web", port: 18000, gracefulStopMs: 5000 }] }`,
		// a translation by hand that got two things wrong
		"rollbridge.jsonnet": `{ proxy: { port: 8181 }, processes: [{ id: 'web', policy: 'proxied', command: 'bin/web', port: 18000 }] }`,
	})
	out, errOut, code := ctlExec(t, dir, nil, "config", "migrate", "rollbridge.js", "--compare", "rollbridge.jsonnet")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"not equivalent: 2 fields of the normalised config differ:",
		"  processes[0].gracefulStopMs: the JavaScript config gives 5000, the Jsonnet file 10000",
		"  proxy.port: the JavaScript config gives 8180, the Jsonnet file 8181",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestMigrateRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
		code            int
	}{
		{"no default export", `export const x = 1`, "must export a default config object or function", 1},
		{"dynamic import", `export default import("./x.js")`, "dynamic import() is not supported", 1},
		{"a package", `import path from "node:path"; export default {}`, `cannot load "node:path": only local config modules`, 1},
		{"a throw", `export default () => { throw new Error("no PORT") }`, "no PORT", 1},
		{"a rejected promise", `export default async () => { throw new Error("boom") }`, "promise was rejected: Error: boom", 1},
		{"not an object", `export default [1]`, "the config is an array, not an object", 1},
		{"a syntax error", `export default {`, "rollbridge.js", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := appDir(t, map[string]string{"rollbridge.js": tc.src})
			out, errOut, code := ctlExec(t, dir, nil, "config", "migrate", "rollbridge.js")
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d (want %d), stderr lacks %q\n%s%s", code, tc.code, tc.want, out, errOut)
			}
			if _, err := os.Stat(filepath.Join(dir, "rollbridge.jsonnet")); err == nil {
				t.Errorf("a file was written")
			}
		})
	}
	t.Run("an existing output", func(t *testing.T) {
		dir := appDir(t, map[string]string{"rollbridge.js": `export default {}`, "rollbridge.jsonnet": "{}"})
		_, errOut, code := ctlExec(t, dir, nil, "config", "migrate", "rollbridge.js")
		if code != 1 || !strings.Contains(errOut, "rollbridge.jsonnet exists; pass --force") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
	t.Run("usage", func(t *testing.T) {
		_, errOut, code := ctlExec(t, t.TempDir(), nil, "config", "migrate", "a.js", "b.js")
		if code != 2 || !strings.Contains(errOut, "takes one argument") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
}
