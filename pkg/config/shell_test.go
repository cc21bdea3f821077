package config

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// hostileValues are values a deploy request or the daemon's environment
// may carry: every character the shell treats specially, alone and
// combined, plus the attack from the issue (a valid git branch name).
var hostileValues = []string{
	"",
	"plain",
	"two words",
	"fix$(touch${IFS}MARK)",
	"`touch MARK`",
	"'; touch MARK; '",
	`"; touch MARK; "`,
	`\"; touch MARK; \"`,
	`it's`,
	`back\slash\`,
	"new\nline; touch MARK",
	"$HOME ${HOME} $((1+1)) $1 $@ $*",
	"* ? [a-z] {a,b} ~root ~",
	"a=b",
	"-n",
	"|| touch MARK &&",
	"> MARK",
	"#comment",
	"tab\there",
	"!event",
	"\x1b[31mred\x1b[0m",
	"é ünïcødé",
	"if",
	"a[$(touch MARK)]",
}

func TestCommandContexts(t *testing.T) {
	for _, tc := range []struct {
		tmpl string
		want []shellContext
	}{
		{"run {{releasePath}}", []shellContext{ctxBare}},
		{"run --dir={{releasePath}}/bin x", []shellContext{ctxBare}},
		{`run "{{releasePath}}/bin"`, []shellContext{ctxDouble}},
		{`run "$HOME{{releasePath}}" "$1{{releasePath}}" "\$A{{releasePath}}" $A{{releasePath}}`,
			[]shellContext{ctxDoubleAfterName, ctxDoubleAfterName, ctxDoubleAfterName, ctxBare}},
		{`run "a $(ls "{{releasePath}}") b"`, []shellContext{ctxDouble}},
		{`run $(dirname {{releasePath}})`, []shellContext{ctxBare}},
		{`run '{{releasePath}}'`, []shellContext{ctxSingle}},
		{`sh -c 'exec {{releasePath}}'`, []shellContext{ctxSingle}},
		{`run $'{{releasePath}}'`, []shellContext{ctxSingle}},
		{`run "$(echo '{{releasePath}}')"`, []shellContext{ctxSingle}},
		{"run `echo {{releasePath}}`", []shellContext{ctxBacktick}},
		{"run \"`echo {{releasePath}}`\"", []shellContext{ctxBacktick}},
		{"cat <<EOF\n{{releasePath}}\nEOF\nrun {{releasePath}}", []shellContext{ctxHeredoc, ctxBare}},
		{"cat <<'EOF'\n{{releasePath}}\nEOF\nrun \"{{releasePath}}\"", []shellContext{ctxHeredoc, ctxDouble}},
		{"cat <<-EOF\n\t{{releasePath}}\n\tEOF\nrun {{releasePath}}", []shellContext{ctxHeredoc, ctxBare}},
		{"cat <<EOF; run {{releasePath}}\nbody\nEOF", []shellContext{ctxBare}},
		{"cat <<<{{releasePath}}", []shellContext{ctxBare}},
		{"run # {{releasePath}}\nrun {{releasePath}}", []shellContext{ctxComment, ctxBare}},
		{"run a#{{releasePath}}", []shellContext{ctxBare}},
		{"run ${X:-{{releasePath}}}", []shellContext{ctxParam}},
		{"run $(( {{releasePath}} + 1 ))", []shellContext{ctxArith}},
		{`run \{{releasePath}}`, []shellContext{ctxEscaped}},
		{`run "\{{releasePath}}"`, []shellContext{ctxEscaped}},
		{`run ${{releasePath}}`, []shellContext{ctxDollar}},
		{`run "${{releasePath}}"`, []shellContext{ctxDollar}},
		{`run $"{{releasePath}}"`, []shellContext{ctxLocale}},
		{`eval run {{releasePath}}`, []shellContext{ctxCode}},
		{`X=1 eval "run {{releasePath}}"`, []shellContext{ctxCode}},
		{`if eval true; then run {{releasePath}}; fi`, []shellContext{ctxBare}},
		{`[[ -d {{releasePath}} ]] && run {{releasePath}}`, []shellContext{ctxCode, ctxBare}},
		{`(( n = {{releasePath}} )); run "{{releasePath}}"`, []shellContext{ctxCode, ctxDouble}},
		{`let n={{releasePath}}`, []shellContext{ctxCode}},
		{`a[{{releasePath}}]=1`, []shellContext{ctxCode}},
		{`a={{releasePath}}`, []shellContext{ctxBare}},
		{`echo $(case x in a) echo;; esac) {{releasePath}}`, []shellContext{ctxUnknown}},
		{`echo ${X:-'a'} {{releasePath}}`, []shellContext{ctxUnknown}},
		{`echo @(a|b) {{releasePath}}`, []shellContext{ctxUnknown}},
		{"cat <<{{releasePath}}\nx\n{{releasePath}}", []shellContext{ctxUnknown, ctxUnknown}},
		{"(cd {{releasePath}} && exec ./run) &", []shellContext{ctxBare}},
		{"run {{port}} '{{port}}'", []shellContext{ctxBare, ctxSingle}},
	} {
		t.Run(tc.tmpl, func(t *testing.T) {
			got := commandContexts(parseTemplate(tc.tmpl))
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("placeholder %d: got %s, want %s", i, got[i].where(), tc.want[i].where())
				}
			}
		})
	}
}

// TestRenderCommandRefusesUnsafePlaces: a text value where no quoting is
// safe fails the start with the field, the placeholder and a way out; a
// number there is fine.
func TestRenderCommandRefusesUnsafePlaces(t *testing.T) {
	v := fullVars()
	_, err := v.RenderCommand("processes[web].command", `sh -c 'exec serve {{releasePath}}'`)
	var te *TemplateError
	if !errors.As(err, &te) || te.Placeholder != "releasePath" || !strings.Contains(err.Error(), "inside single quotes") ||
		!strings.Contains(err.Error(), `"$ROLLBRIDGE_RELEASE_PATH"`) {
		t.Errorf("got %v", err)
	}
	if got, err := v.RenderCommand("f", `sh -c 'exec serve --port {{port}}'`); err != nil || got != `sh -c 'exec serve --port 18001'` {
		t.Errorf("a number inside single quotes: got %q, %v", got, err)
	}
}

// TestRenderCommandReachesTheShellVerbatim renders templates with hostile
// values and runs them with the real /bin/sh and bash: each command
// prints its arguments, which must be exactly the values, and none of the
// commands hidden in the values may run.
func TestRenderCommandReachesTheShellVerbatim(t *testing.T) {
	shells := []string{"/bin/sh"}
	if bash, err := exec.LookPath("bash"); err == nil {
		shells = append(shells, bash)
	}
	dir := t.TempDir()
	mark := filepath.Join(dir, "MARK")
	templates := []struct {
		tmpl string
		want func(v string) []string
	}{
		{`printf '%s\0' {{env.V}}`, func(v string) []string { return []string{v} }},
		{`printf '%s\0' "{{env.V}}"`, func(v string) []string { return []string{v} }},
		{`printf '%s\0' x{{env.V}}y "x{{env.V}}y" {{env.V}}{{env.V}}`,
			func(v string) []string { return []string{"x" + v + "y", "x" + v + "y", v + v} }},
		{`X={{env.V}}; printf '%s\0' "$X"`, func(v string) []string { return []string{v} }},
		{`X=x; printf '%s\0' "$X{{env.V}}" $X{{env.V}}`, func(v string) []string { return []string{"x" + v, "x" + v} }},
		{`printf '%s\0' "$(printf '%s' "{{env.V}}")"`, func(v string) []string { return []string{v} }},
		{`printf '%s\0' $(printf '%s' {{env.V}} | wc -c)`, func(v string) []string { return []string{strconv.Itoa(len(v))} }},
		{"printf '%s\\0' {{env.V}} # {{port}}", func(v string) []string { return []string{v} }},
		{"cat <<EOF | tr -d '\\n'; printf '\\0%s\\0' {{env.V}}\n{{port}}\nEOF", func(v string) []string { return []string{"18001", v} }},
	}
	// One shell per template runs it for every value, the runs separated
	// by a \x01 on stdout.
	for _, sh := range shells {
		for _, tc := range templates {
			var script []string
			var vals []string
			for _, val := range hostileValues {
				val = strings.ReplaceAll(val, "MARK", mark)
				v := fullVars()
				v.Env = map[string]string{"V": val}
				cmd, err := v.RenderCommand("f", tc.tmpl)
				if err != nil {
					t.Fatalf("%s with %q: %v", tc.tmpl, val, err)
				}
				script = append(script, cmd, `printf '\001'`)
				vals = append(vals, val)
			}
			c := exec.Command(sh, "-c", strings.Join(script, "\n"))
			c.Dir = dir
			var out, errb bytes.Buffer
			c.Stdout, c.Stderr = &out, &errb
			if err := c.Run(); err != nil || errb.Len() > 0 {
				t.Errorf("%s -c %q: %v\n%s", sh, tc.tmpl, err, errb.String())
				continue
			}
			runs := strings.Split(strings.TrimSuffix(out.String(), "\x01"), "\x01")
			if len(runs) != len(vals) {
				t.Fatalf("%s -c %q: %d runs printed, want %d:\n%q", sh, tc.tmpl, len(runs), len(vals), out.String())
			}
			for k, val := range vals {
				got := strings.Split(strings.TrimSuffix(runs[k], "\x00"), "\x00")
				if want := tc.want(val); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
					t.Errorf("%s: %s with %q printed %q, want %q", sh, tc.tmpl, val, got, want)
				}
			}
			if _, err := os.Stat(mark); err == nil {
				t.Fatalf("%s: %s ran a command hidden in a value", sh, tc.tmpl)
			}
		}
	}
}
