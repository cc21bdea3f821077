package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-jsonnet"
)

// Load evaluates and validates the config at path with env as
// std.extVar('env'). An empty path means DefaultFile in the working directory.
//
// Load evaluates in this process, with no bound on time or memory and no
// way to interrupt it: it is for files whose author runs the evaluation
// (tests, tools). The daemon and rollbridgectl use a Loader.
//
// Errors: *NotFoundError (no such file), *EvalError (Jsonnet syntax or
// runtime error, with file:line:column), Issues (the config is invalid; the
// partially decoded *Config is returned alongside for reporting).
func Load(path string, env map[string]string) (*Config, error) {
	abs, err := resolve(path)
	if err != nil {
		return nil, err
	}
	data, err := Evaluate(abs, env)
	if err != nil {
		return nil, err
	}
	return Decode(data, abs)
}

// resolve makes path absolute (DefaultFile when empty) and checks that it
// exists.
func resolve(path string) (string, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultFile
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
		shown := path
		if !explicit {
			shown = abs
		}
		return "", &NotFoundError{Path: shown, Explicit: explicit}
	}
	return abs, nil
}

// Evaluate runs the Jsonnet file and returns its JSON output. A top-level
// function is called with no arguments, so its parameters need defaults.
func Evaluate(path string, env map[string]string) ([]byte, error) {
	vm := jsonnet.MakeVM()
	vm.Importer(&jsonnet.FileImporter{}) // imports resolve relative to the importing file
	if env == nil {
		env = map[string]string{}
	}
	envJSON, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	vm.ExtCode("env", string(envJSON))
	vm.ErrorFormatter.SetMaxStackTraceSize(8)
	out, err := vm.EvaluateFile(path)
	if err != nil {
		return nil, &EvalError{Path: path, Message: strings.TrimSpace(err.Error())}
	}
	return []byte(out), nil
}

// EnvMap turns os.Environ-style KEY=VALUE pairs into a map.
func EnvMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
