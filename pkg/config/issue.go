package config

import (
	"fmt"
	"strings"
)

// Issue is one problem found in a config: where, what, and how to fix it.
type Issue struct {
	Path    string `json:"-"`
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

func (i Issue) String() string { return i.Message }

// Issues is the error Load returns for a config that evaluated but is
// invalid. It lists every problem at once.
type Issues []Issue

func (is Issues) Error() string {
	if len(is) == 1 {
		return "invalid config: " + is[0].Message
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid config: %d issues:", len(is))
	for i, is := range is {
		fmt.Fprintf(&b, " (%d) %s;", i+1, is.Message)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// EvalError is a Jsonnet syntax or runtime error. Message keeps go-jsonnet's
// file:line:column text.
type EvalError struct {
	Path    string
	Message string
}

func (e *EvalError) Error() string { return "evaluate " + e.Path + ": " + e.Message }

// NotFoundError says which config file was looked for and not found.
type NotFoundError struct {
	Path     string
	Explicit bool // given with -c/--config, rather than the default
}

func (e *NotFoundError) Error() string {
	if e.Explicit {
		return fmt.Sprintf("config file %s does not exist; check the -c/--config path", e.Path)
	}
	return fmt.Sprintf("no config file: looked for %s in the working directory; create it or pass -c/--config PATH", e.Path)
}

// collector accumulates issues during a walk, and the fields it took from
// the config (see fieldSet).
type collector struct {
	issues Issues
	set    fieldSet
}

// failedAt reports whether an issue was recorded at exactly path.
func (c *collector) failedAt(path string) bool {
	for _, is := range c.issues {
		if is.Path == path {
			return true
		}
	}
	return false
}

// failed reports whether an issue was already recorded at path or below it,
// so a cross-field rule does not repeat what a type check already said.
func (c *collector) failed(path string) bool {
	for _, is := range c.issues {
		if is.Path == path || strings.HasPrefix(is.Path, path+".") || strings.HasPrefix(is.Path, path+"[") {
			return true
		}
	}
	return false
}

func (c *collector) add(path, fix, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		path = "config"
	}
	msg = path + ": " + msg
	c.issues = append(c.issues, Issue{Path: path, Message: msg, Fix: fix})
}
