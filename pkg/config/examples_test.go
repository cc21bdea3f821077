package config

import (
	"path/filepath"
	"testing"
)

// TestExamplesValidate loads every config shipped in examples/: they are
// documentation, and documentation that does not validate is a bug.
func TestExamplesValidate(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.jsonnet")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no examples found in examples/")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f, map[string]string{"HOME": "/home/deploy"})
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if cfg.Proxied() == nil {
				t.Errorf("%s has no proxied process", f)
			}
		})
	}
}
