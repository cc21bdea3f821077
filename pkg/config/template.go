package config

import (
	"fmt"
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
	Placeholder string // without braces; "" for a syntax error
	Reason      string
}

func (e *TemplateError) Error() string {
	if e.Placeholder == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s: template {{%s}} %s", e.Field, e.Placeholder, e.Reason)
}

// placeholders returns the names inside {{...}} in s, in order, trimmed of
// spaces, or an error for an unterminated or empty placeholder.
func placeholders(s string) ([]string, error) {
	var names []string
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			return names, nil
		}
		j := strings.Index(s[i+2:], "}}")
		if j < 0 {
			return names, fmt.Errorf("unterminated placeholder %q: add the closing }}", truncate(s[i:], 30))
		}
		name := strings.TrimSpace(s[i+2 : i+2+j])
		if name == "" {
			return names, fmt.Errorf("empty placeholder {{}}")
		}
		names = append(names, name)
		s = s[i+2+j+2:]
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Render replaces every {{name}} in s. field names the config field in errors.
func (v *Vars) Render(field, s string) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		b.WriteString(rest[:i])
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			return "", &TemplateError{Field: field, Reason: fmt.Sprintf("unterminated placeholder %q: add the closing }}", truncate(rest[i:], 30))}
		}
		name := strings.TrimSpace(rest[i+2 : i+2+j])
		val, err := v.lookup(name)
		if err != nil {
			return "", &TemplateError{Field: field, Placeholder: name, Reason: err.Error()}
		}
		b.WriteString(val)
		rest = rest[i+2+j+2:]
	}
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
	Command string
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
	if r.Command, err = vars.Render(field("command"), p.Command); err != nil {
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
