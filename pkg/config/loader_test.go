package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The test binary serves the evaluation mode itself, as the real binaries
// do: Loader re-executes /proc/self/exe.
func TestMain(m *testing.M) {
	if EvaluatorRequested() {
		os.Exit(ServeEvaluation(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// Runaway configs: one that computes for ages in constant memory (2^80
// calls, 80 deep), and one that doubles an array until memory runs out.
const (
	runawayTime   = "local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1);\n{ application: 'x' + f(80) }\n"
	runawayMemory = "local grow(a, n) = if n == 0 then a else grow(a + a, n - 1) tailstrict;\n{ application: 'x' + std.length(grow(std.range(1, 1000), 40)) }\n"
)

func TestLoaderLoadsWhatLoadLoads(t *testing.T) {
	examples, err := filepath.Glob("../../examples/*.jsonnet")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	env := map[string]string{"ROLLBRIDGE_DEMO_APP": "/bin/app", "DATABASE_URL": "postgres://x"}
	for _, path := range examples {
		want, werr := Load(path, env)
		got, gerr := Loader{}.Load(context.Background(), path, env)
		if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Loader gave %+v, %v; Load gave %+v, %v", path, got, gerr, want, werr)
		}
	}
	if _, err := (Loader{}).Load(context.Background(), filepath.Join(t.TempDir(), "none.jsonnet"), nil); !errors.As(err, new(*NotFoundError)) {
		t.Errorf("missing file: got %v, want *NotFoundError", err)
	}
}

func TestLoaderReportsJsonnetErrorsWithTheirPlace(t *testing.T) {
	p := writeConfig(t, "{\n  a: 1 +,\n}\n")
	_, err := Loader{}.Load(context.Background(), p, nil)
	var ee *EvalError
	if !errors.As(err, &ee) || !strings.Contains(ee.Message, "rollbridge.jsonnet:2:") {
		t.Errorf("got %v, want an *EvalError at line 2", err)
	}
}

func TestLoaderStopsAtTheTimeLimit(t *testing.T) {
	p := writeConfig(t, runawayTime)
	_, err := Loader{Limits: Limits{Timeout: 300 * time.Millisecond}}.Load(context.Background(), p, nil)
	var le *LimitError
	if !errors.As(err, &le) || le.Memory || !strings.Contains(err.Error(), "ran longer than 300ms ("+EnvEvalTimeout+" raises the limit)") {
		t.Errorf("got %v, want a time *LimitError", err)
	}
}

func TestLoaderStopsAtTheMemoryLimit(t *testing.T) {
	p := writeConfig(t, runawayMemory)
	_, err := Loader{Limits: Limits{MemoryBytes: 64 << 20, Timeout: time.Hour}}.Load(context.Background(), p, nil)
	var le *LimitError
	if !errors.As(err, &le) || !le.Memory || !strings.Contains(err.Error(), "more than 64 MiB of memory ("+EnvEvalMemory+" raises the limit)") {
		t.Errorf("got %v, want a memory *LimitError", err)
	}
}

func TestLoaderStopsWhenItsContextEnds(t *testing.T) {
	p := writeConfig(t, runawayTime)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Loader{Limits: Limits{Timeout: time.Hour}}.Load(ctx, p, nil)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestLimitsFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want Limits
		err  string
	}{
		{"defaults", nil, Limits{Timeout: DefaultEvalTimeout, MemoryBytes: DefaultEvalMemory}, ""},
		{"both", map[string]string{EnvEvalTimeout: "60000", EnvEvalMemory: "2048"}, Limits{Timeout: time.Minute, MemoryBytes: 2 << 30}, ""},
		{"empty is unset", map[string]string{EnvEvalTimeout: ""}, Limits{Timeout: DefaultEvalTimeout, MemoryBytes: DefaultEvalMemory}, ""},
		{"not a number", map[string]string{EnvEvalTimeout: "10s"}, Limits{}, `ROLLBRIDGE_EVAL_TIMEOUT_MS="10s": must be a positive whole number of milliseconds`},
		{"zero", map[string]string{EnvEvalMemory: "0"}, Limits{}, `ROLLBRIDGE_EVAL_MEMORY_MB="0": must be a positive whole number of MiB`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LimitsFromEnv(tc.env)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Errorf("got %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
