package config

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Vars are the values a process template can reference. The zero value of a
// field means "no value": rendering a placeholder that needs it is an error,
// so a typo or a missing port surfaces at start instead of as a broken command.
type Vars struct {
	ReleasePath  string
	ReleaseID    string
	Revision     string
	Application  string
	ProcessID    string
	ReplicaIndex int
	ReplicaCount int
	Port         int            // 0: this process has no port
	Ports        map[string]int // allocated ports by base process id
	ProxyHost    string
	ProxyPort    int
	UpstreamHost string
	Env          map[string]string // the daemon's environment
}

// templateNames are the plain variables; "ports.<id>" and "env.<NAME>" are
// the two families on top.
var templateNames = []string{
	"releasePath", "releaseId", "revision", "application", "processId",
	"replicaIndex", "replicaCount", "port",
	"proxy.host", "proxy.port", "proxy.upstreamHost",
}

// TemplateError names the field and the placeholder that could not be rendered.
type TemplateError struct {
	Field       string // e.g. `processes[web].command`
	Placeholder string // without braces
	Reason      string
}

func (e *TemplateError) Error() string {
	return fmt.Sprintf("%s: template {{%s}} %s", e.Field, e.Placeholder, e.Reason)
}

// piece is a run of literal text, or a placeholder (name set, without
// braces and trimmed).
type piece struct {
	lit  string
	name string
	ph   bool
}

// placeholderRE is the Node original's placeholder: a name of letters,
// digits and _ . - in double braces, with optional whitespace (what
// JavaScript's \s matches) around it. Any other text in braces, a Go or
// Docker template such as {{json .State}} or a lone {{, is not a
// placeholder and stays as it is, as it did in the original.
var placeholderRE = regexp.MustCompile(`\{\{[\s\v\x{00a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}\x{feff}]*` +
	`([A-Za-z0-9_.-]+)[\s\v\x{00a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}\x{feff}]*\}\}`)

// parseTemplate splits s into literal text and placeholders (see
// placeholderRE).
func parseTemplate(s string) []piece {
	var out []piece
	at := 0
	for _, m := range placeholderRE.FindAllStringSubmatchIndex(s, -1) {
		if m[0] > at {
			out = append(out, piece{lit: s[at:m[0]]})
		}
		out = append(out, piece{name: s[m[2]:m[3]], ph: true})
		at = m[1]
	}
	if at < len(s) {
		out = append(out, piece{lit: s[at:]})
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// numeric reports whether placeholder name always renders as a decimal
// number, which means the same wherever the shell reads it.
func numeric(name string) bool {
	switch name {
	case "port", "replicaIndex", "replicaCount", "proxy.port":
		return true
	}
	return strings.HasPrefix(name, "ports.")
}

// commandContexts returns where in the shell command each placeholder of
// pieces stands (see shellScan), in order.
func commandContexts(pieces []piece) []shellContext {
	var toks []int
	n := 0
	for _, p := range pieces {
		if p.ph {
			n++
			toks = append(toks, -n)
			continue
		}
		for i := 0; i < len(p.lit); i++ {
			toks = append(toks, int(p.lit[i]))
		}
	}
	return shellScan(toks, n)
}

// envAlternative names the environment variable a process can read instead
// of placeholder name in its command, or "".
func envAlternative(name string) string {
	switch name {
	case "releasePath":
		return "ROLLBRIDGE_RELEASE_PATH"
	case "releaseId":
		return "ROLLBRIDGE_RELEASE_ID"
	case "revision":
		return "ROLLBRIDGE_REVISION"
	case "application":
		return "ROLLBRIDGE_APPLICATION"
	case "processId":
		return "ROLLBRIDGE_PROCESS_ID"
	}
	if key, ok := strings.CutPrefix(name, "env."); ok {
		return key
	}
	return ""
}

// unsafeFix is the Fix: line for placeholder name standing where no
// quoting makes a value safe.
func unsafeFix(name string) string {
	fix := "Move it into a bare word or inside double quotes"
	if v := envAlternative(name); v != "" {
		return fix + fmt.Sprintf(`, or read the value from the environment instead ("$%s")`, v)
	}
	return fix + fmt.Sprintf(`, or pass it through the environment (env: {VALUE: '{{%s}}'}, then "$VALUE")`, name)
}

// Render replaces every {{name}} in s with its value as it is, for a field
// that no shell reads (cwd, env). field names the config field in errors.
func (v *Vars) Render(field, s string) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	pieces := parseTemplate(s)
	var b strings.Builder
	for _, p := range pieces {
		if !p.ph {
			b.WriteString(p.lit)
			continue
		}
		val, err := v.lookup(p.name)
		if err != nil {
			return "", &TemplateError{Field: field, Placeholder: p.name, Reason: err.Error()}
		}
		b.WriteString(val)
	}
	return b.String(), nil
}

// RenderCommand replaces every {{name}} in the shell command s with its
// value quoted for the place it stands (see shellScan): in a bare word as
// one single-quoted string, inside double quotes with \ $ ` " escaped.
// Numbers are pasted as they are. Whatever the values, the rendered
// command has the same shell words as the template, each placeholder's
// value ending up in its word verbatim. A placeholder standing anywhere
// else is an error (validate reports it first).
func (v *Vars) RenderCommand(field, s string) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	pieces := parseTemplate(s)
	ctxs := commandContexts(pieces)
	var b strings.Builder
	k := 0
	for _, p := range pieces {
		if !p.ph {
			b.WriteString(p.lit)
			continue
		}
		ctx := ctxs[k]
		k++
		val, err := v.lookup(p.name)
		if err != nil {
			return "", &TemplateError{Field: field, Placeholder: p.name, Reason: err.Error()}
		}
		switch {
		case numeric(p.name):
			b.WriteString(val)
		case ctx == ctxBare:
			b.WriteString(shellQuote(val))
		case ctx == ctxDouble:
			b.WriteString(doubleQuoteEscape(val))
		case ctx == ctxDoubleAfterName:
			// "" ends the name: "$HOME""value" is $HOME, then the value.
			b.WriteString(`""` + doubleQuoteEscape(val))
		default:
			return "", &TemplateError{Field: field, Placeholder: p.name,
				Reason: fmt.Sprintf("stands %s, where no quoting keeps a value from being read as shell syntax; %s", ctx.where(), lowerFirst(unsafeFix(p.name)))}
		}
	}
	return b.String(), nil
}

// shellQuote is s as one single-quoted shell string: every character
// literal, a single quote written as '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// doubleQuoteEscape escapes the characters special inside double quotes.
func doubleQuoteEscape(s string) string {
	if !strings.ContainsAny(s, "\\$`\"") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\', '$', '`', '"':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func (v *Vars) lookup(name string) (string, error) {
	nonEmpty := func(s, what string) (string, error) {
		if s == "" {
			return "", fmt.Errorf("has no value (%s is not set)", what)
		}
		return s, nil
	}
	switch name {
	case "releasePath":
		return nonEmpty(v.ReleasePath, "the release path")
	case "releaseId":
		return nonEmpty(v.ReleaseID, "the release id")
	case "revision":
		if v.Revision == "" {
			return nonEmpty(v.ReleaseID, "the revision")
		}
		return v.Revision, nil
	case "application":
		return nonEmpty(v.Application, "application")
	case "processId":
		return nonEmpty(v.ProcessID, "the process id")
	case "replicaIndex":
		return strconv.Itoa(v.ReplicaIndex), nil
	case "replicaCount":
		if v.ReplicaCount <= 0 {
			return "1", nil
		}
		return strconv.Itoa(v.ReplicaCount), nil
	case "port":
		if v.Port == 0 {
			return "", fmt.Errorf("has no value: process %q has no port; add a port to it", v.ProcessID)
		}
		return strconv.Itoa(v.Port), nil
	case "proxy.host":
		return nonEmpty(v.ProxyHost, "proxy.host")
	case "proxy.port":
		return strconv.Itoa(v.ProxyPort), nil
	case "proxy.upstreamHost":
		return nonEmpty(v.UpstreamHost, "proxy.upstreamHost")
	}
	if id, ok := strings.CutPrefix(name, "ports."); ok {
		p, found := v.Ports[id]
		if !found || p == 0 {
			return "", fmt.Errorf("has no value: no process %q with a port", id)
		}
		return strconv.Itoa(p), nil
	}
	if key, ok := strings.CutPrefix(name, "env."); ok {
		val, found := v.Env[key]
		if !found {
			return "", fmt.Errorf("has no value: %s is not set in the daemon's environment", key)
		}
		return val, nil
	}
	return "", unknownPlaceholder(name)
}

func unknownPlaceholder(name string) error {
	msg := "is not a known variable"
	if s := suggest(name, templateNames); s != "" {
		msg += fmt.Sprintf(" (did you mean {{%s}}?)", s)
	}
	return fmt.Errorf("%s; known: %s, ports.<id>, env.<NAME>", msg, strings.Join(templateNames, ", "))
}

// Rendered is a process's templates rendered for one instance.
type Rendered struct {
	Command string // for /bin/sh -c: every value quoted (Vars.RenderCommand)
	Cwd     string
	Env     map[string]string
}

// Render renders the process's command, cwd and env with vars. vars.ProcessID
// should be the base id; Render fills it when empty.
func (p *Process) Render(vars Vars) (Rendered, error) {
	if vars.ProcessID == "" {
		vars.ProcessID = p.ID
	}
	field := func(f string) string { return fmt.Sprintf("processes[%s].%s", p.ID, f) }
	var r Rendered
	var err error
	if r.Command, err = vars.RenderCommand(field("command"), p.Command); err != nil {
		return r, err
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "{{releasePath}}"
	}
	if r.Cwd, err = vars.Render(field("cwd"), cwd); err != nil {
		return r, err
	}
	r.Env = make(map[string]string, len(p.Env))
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic: the first failing key is always the same
	for _, k := range keys {
		if r.Env[k], err = vars.Render(field("env."+k), p.Env[k]); err != nil {
			return r, err
		}
	}
	return r, nil
}
