package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// runCtl runs the CLI in-process and returns stdout, stderr and the exit code.
func runCtl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"rollbridgectl"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func writeTemp(t *testing.T, name, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.jsonnet")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		out, errOut, code := runCtl(t, "validate", "-c", f)
		if code != 0 || !strings.Contains(out, "is valid") {
			t.Errorf("validate %s: exit %d, out %q, err %q", f, code, out, errOut)
		}
	}
}

func TestValidateReportsAllIssues(t *testing.T) {
	p := writeTemp(t, "bad.jsonnet", `{proxy: {prot: 1}, processes: [{id: 'web', command: 'x'}, {id: 'web', command: 'y'}]}`)
	stdout, out, code := runCtl(t, "validate", "--config", p) // the issues go to stderr, as in the Node original
	if code != 1 || stdout != "" {
		t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, stdout)
	}
	for _, want := range []string{"Found 3 configuration issues in " + p, "1. proxy: unknown field \"prot\"", "   Fix: Rename \"prot\" to \"port\".",
		"exactly one process must have policy proxied", "duplicate process id \"web\""} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestValidateJSON(t *testing.T) {
	var res struct {
		Config     *json.RawMessage                `json:"config"`
		Issues     []struct{ Message, Fix string } `json:"issues"`
		Path       string                          `json:"path"`
		Valid      bool                            `json:"valid"`
		Normalized *struct {
			Processes []struct {
				ID string `json:"id"`
			} `json:"processes"`
			ReleaseRetention struct {
				Keep int `json:"keep"`
			} `json:"releaseRetention"`
		} `json:"normalized"`
	}
	out, _, code := runCtl(t, "validate", "--json", "-c", "../../examples/minimal.jsonnet")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if !res.Valid || res.Config == nil || len(res.Issues) != 0 || res.Path == "" {
		t.Errorf("got %+v", res)
	}
	// "config" is the Node original's summary, exactly; the normalized
	// config, defaults filled in, has a key of its own.
	var summary map[string]any
	_ = json.Unmarshal(*res.Config, &summary)
	if want := map[string]any{"application": "minimal", "processes": float64(1), "proxy": map[string]any{"host": "127.0.0.1", "port": float64(8182)}}; !reflect.DeepEqual(summary, want) {
		t.Errorf("config %v, want %v", summary, want)
	}
	if res.Normalized == nil || len(res.Normalized.Processes) != 1 || res.Normalized.Processes[0].ID != "web" || res.Normalized.ReleaseRetention.Keep != 10 {
		t.Errorf("normalized: %+v", res.Normalized)
	}
	// The keys are exactly the documented ones.
	var raw map[string]json.RawMessage
	_ = json.Unmarshal([]byte(out), &raw)
	if len(raw) != 5 || raw["normalized"] == nil {
		t.Errorf("keys %v, want config, issues, path, valid, normalized", raw)
	}

	p := writeTemp(t, "broken.jsonnet", "{\n  proxy: {,\n}")
	out, _, code = runCtl(t, "validate", "--json", "-c", p)
	res.Config, res.Valid, res.Issues = nil, true, nil
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 {
		t.Fatalf("exit %d, %v\n%s", code, err, out)
	}
	if res.Valid || res.Config != nil || len(res.Issues) != 1 || !strings.Contains(res.Issues[0].Message, "broken.jsonnet:2:") || res.Issues[0].Fix == "" {
		t.Errorf("syntax error as JSON: %+v", res)
	}
	if !strings.Contains(out, `"config": null`) || strings.Contains(out, `"normalized"`) {
		t.Errorf("config must be null and normalized left out when invalid:\n%s", out)
	}
}

func TestValidateMissingDefaultFile(t *testing.T) {
	t.Chdir(t.TempDir())
	_, out, code := runCtl(t, "validate")
	if code != 1 || !strings.Contains(out, "rollbridge.jsonnet") || !strings.Contains(out, "-c/--config") {
		t.Errorf("exit %d, out %q", code, out)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	_, errOut, code := runCtl(t, "validate", "--bogus")
	if code != exitUsage || !strings.Contains(errOut, "bogus") {
		t.Errorf("unknown flag: exit %d, %q", code, errOut)
	}
	_, _, code = runCtl(t, "deploy", "--socket", "/nonexistent.sock")
	if code != exitUsage {
		t.Errorf("missing --release-path: exit %d, want %d", code, exitUsage)
	}
}

func TestUnreachableDaemonExit3(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, errOut, code := runCtl(t, "status", "--socket", sock)
	if code != exitUnreachable || !strings.Contains(errOut, sock) || !strings.Contains(errOut, "is rollbridged running?") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 {
		t.Errorf("want a one-line error, got %q", errOut)
	}
}

func TestHelpAndVersion(t *testing.T) {
	out, _, code := runCtl(t, "--help")
	if code != 0 || !strings.Contains(out, "deploy") || !strings.Contains(out, "validate") {
		t.Errorf("help: %d %q", code, out)
	}
	out, _, code = runCtl(t, "--version")
	if code != 0 || !strings.Contains(out, "rollbridgectl version") {
		t.Errorf("version: %d %q", code, out)
	}
}
