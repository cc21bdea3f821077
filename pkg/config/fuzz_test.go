package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"mvdan.cc/sh/v3/syntax"
)

// FuzzDecode feeds arbitrary bytes to the decoder (the part of the loader
// after Jsonnet evaluation, which is where untrusted shapes meet our code).
// It must never panic, and whatever validates must survive a round trip
// through its normalised JSON form unchanged.
func FuzzDecode(f *testing.F) {
	examples, _ := filepath.Glob("../../examples/*.jsonnet")
	for _, path := range examples {
		if data, err := Evaluate(path, map[string]string{}); err == nil {
			f.Add(data)
		}
	}
	if data, err := os.ReadFile("testdata/every-field.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"proxy":{},"processes":[{"id":"web","policy":"proxied","command":"x {{port}}","port":18000}]}`))
	f.Add([]byte(`{"proxy":{"trustedProxies":["::ffff:10.0.0.0/104","10.0.0.1","fe80::/10"]},"processes":[{"id":"web","policy":"proxied","command":"x","port":1}]}`))
	f.Add([]byte(`{"proxy":{"port":"x"},"processes":[{"id":"a#1","replicas":2,"port":{"from":5,"to":1}}]}`))
	f.Add([]byte(`{"proxy":{},"processes":[{"id":"web","policy":"proxied","command":"x","port":{"from":18000},"health":null,"gracefulStopMs":"indefinite"},{"id":"s","policy":"service","deployStrategy":"handoff","command":"y","port":{"from":7000,"to":7001}}]}`))
	f.Add([]byte(`[1,2`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Decode(data, "/srv/app/rollbridge.jsonnet")
		if err != nil {
			if _, ok := err.(Issues); !ok {
				t.Fatalf("Decode returned %T, want Issues", err)
			}
			return
		}
		out, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal a valid config: %v", err)
		}
		again, err := Decode(out, cfg.Path)
		if err != nil {
			t.Fatalf("normalised form does not validate: %v\n%s", err, out)
		}
		out2, _ := json.Marshal(again)
		if string(out) != string(out2) {
			t.Fatalf("round trip changed the config:\n%s\n%s", out, out2)
		}
	})
}

// FuzzEvaluate runs arbitrary Jsonnet through the whole loader; errors are
// fine, panics are not. Inputs are kept small because Jsonnet can loop.
func FuzzEvaluate(f *testing.F) {
	f.Add(`{proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: 1}]}`)
	f.Add(`function(a=1) {proxy: {port: a}}`)
	f.Add(`local env = std.extVar('env'); {application: std.get(env, 'X', 'y')}`)
	f.Add(`{`)
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 512 {
			return
		}
		path := filepath.Join(t.TempDir(), "rollbridge.jsonnet")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _ = Load(path, map[string]string{"X": "1"}) // any error is acceptable; a panic is not
	})
}

// FuzzRenderCommand renders arbitrary command templates with arbitrary
// values. It must never panic, and a value must never change the shell
// words of the command: the command rendered with the hostile value is
// parsed (by mvdan.cc/sh, an implementation of the shell grammar
// independent of ours, in its bash variant, the wider one) into the same
// commands, operators and words as the command rendered with a plain
// marker, except that each marker is the value, verbatim.
func FuzzRenderCommand(f *testing.F) {
	examples, _ := filepath.Glob("../../examples/*.jsonnet")
	for _, path := range examples {
		cfg, err := Load(path, map[string]string{"ROLLBRIDGE_DEMO_APP": "/bin/app"})
		if err != nil {
			continue
		}
		for _, p := range cfg.Processes {
			f.Add(p.Command, "fix$(touch${IFS}/tmp/x)")
		}
	}
	for _, tmpl := range []string{
		`exec "{{env.V}}" --port {{port}}`,
		`while true; do echo "worker {{replicaIndex}}/{{replicaCount}} of {{releaseId}}"; sleep 5; done`,
		`cd {{releasePath}} && X={{revision}} exec ./bin/run "$(cat {{releasePath}}/REVISION)" # {{port}}`,
		"cat <<EOF\n{{port}}\nEOF\nrun {{releasePath}}",
		`sh -c 'run {{releasePath}}'`,
		"run `{{releasePath}}` ${X:-{{releasePath}}} $(( {{port}} )) \\{{releasePath}} ${{releasePath}}",
		`[[ -d {{releasePath}} ]]; a[{{releasePath}}]=1; eval {{releasePath}}`,
		`echo $(case x in a) ;; esac) {{releasePath}}`,
		`printf '%s\n' {{application}} "{{processId}}" {{proxy.host}}:{{proxy.port}} {{proxy.upstreamHost}}`,
		// Text in braces that is no placeholder stays as it is.
		`docker inspect -f '{{json .State}}' {{releaseId}} # {{`,
		`echo {{{releasePath}}} "{{ {{releaseId}} }}" {{}}`,
	} {
		for _, v := range hostileValues {
			f.Add(tmpl, v)
		}
	}
	f.Fuzz(func(t *testing.T, tmpl, value string) {
		const marker = "Qz7RbMarkQz7"
		if len(tmpl) > 400 || len(value) > 200 || strings.Contains(tmpl, marker) ||
			!utf8.ValidString(tmpl) || !utf8.ValidString(value) || strings.ContainsAny(tmpl+value, "\x00\r\u0080") {
			// NUL cannot reach a shell; the oracle's lexer reads CR LF as
			// LF, and takes U+0080 (utf8.RuneSelf) for the end of input.
			return
		}
		vars := func(v string) Vars {
			return Vars{ReleasePath: v, ReleaseID: v, Revision: v, Application: v, ProcessID: v, ReplicaIndex: 1, ReplicaCount: 2,
				Port: 18001, Ports: map[string]int{"web": 18001}, ProxyHost: v, ProxyPort: 8182, UpstreamHost: v,
				Env: map[string]string{"V": v, "HOME": v}}
		}
		hv := vars(value)
		got, err := hv.RenderCommand("f", tmpl)
		if err != nil {
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("RenderCommand returned %T, want *TemplateError", err)
			}
			return
		}
		mv := vars(marker)
		plain, err := mv.RenderCommand("f", tmpl)
		if err != nil {
			t.Fatalf("the value decided whether the template renders: %q renders with %q but not with %q: %v", tmpl, value, marker, err)
		}
		want, err := shellShape(plain)
		if err != nil {
			return // not a command the oracle parses (nor, often, the shell)
		}
		for i := range want {
			want[i] = strings.ReplaceAll(want[i], marker, value)
		}
		shape, err := shellShape(got)
		if err != nil {
			t.Fatalf("with the value %q the command no longer parses:\ntemplate: %q\nrendered: %q\n%v", value, tmpl, got, err)
		}
		if strings.Join(shape, "\n") != strings.Join(want, "\n") {
			t.Fatalf("the value %q changed the shell words:\ntemplate: %q\nrendered: %q\ngot  %q\nwant %q", value, tmpl, got, shape, want)
		}
	})
}

// shellShape parses a command and lists, in order, every node of its
// syntax tree by type, with operators, and each word by its literal
// value: its text with the quoting removed, and a token for each
// expansion (whose own words follow in the list).
func shellShape(src string) ([]string, error) {
	file, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(src), "")
	if err != nil {
		return nil, err
	}
	var out []string
	var visit func(n syntax.Node) bool
	visit = func(n syntax.Node) bool {
		switch x := n.(type) {
		case nil:
			return true
		case *syntax.Word:
			var b strings.Builder
			for _, p := range x.Parts {
				wordPart(&b, p, false, visit)
			}
			out = append(out, "word "+b.String())
			return false
		case *syntax.BinaryCmd:
			out = append(out, "binary "+x.Op.String())
		case *syntax.Redirect:
			out = append(out, "redirect "+x.Op.String())
		case *syntax.Lit:
			out = append(out, "lit "+x.Value)
		default:
			out = append(out, fmt.Sprintf("%T", n))
		}
		return true
	}
	syntax.Walk(file, visit)
	return out, nil
}

// wordPart writes the literal value of one part of a word; expansions are
// written as tokens and walked with visit.
func wordPart(b *strings.Builder, p syntax.WordPart, inDouble bool, visit func(syntax.Node) bool) {
	switch x := p.(type) {
	case *syntax.Lit:
		b.WriteString(unescape(x.Value, inDouble))
	case *syntax.SglQuoted:
		if x.Dollar {
			b.WriteString("<$'" + x.Value + "'>")
		} else {
			b.WriteString(x.Value)
		}
	case *syntax.DblQuoted:
		if x.Dollar {
			b.WriteString(`<$">`)
		}
		for _, q := range x.Parts {
			wordPart(b, q, true, visit)
		}
	default:
		fmt.Fprintf(b, "<%T>", p)
		syntax.Walk(p, func(n syntax.Node) bool {
			if n == p {
				return true
			}
			return visit(n)
		})
	}
}

// unescape removes the backslashes the shell removes from a literal:
// unquoted, before any character (and a backslash-newline entirely);
// inside double quotes, only before \ $ ` " and newline.
func unescape(s string, inDouble bool) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		n := s[i+1]
		switch {
		case n == '\n':
			i++
		case !inDouble || strings.IndexByte("\\$`\"", n) >= 0:
			b.WriteByte(n)
			i++
		default:
			b.WriteByte('\\')
		}
	}
	return b.String()
}
