package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSaveFailureReadsTheSameEveryTime: a save that fails at its last
// step, the rename over the state file (here a directory is in the way),
// names that step and the system's reason, never the temporary file, so
// two failures for one cause have one message; and no temporary file is
// left behind.
func TestSaveFailureReadsTheSameEveryTime(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.MkdirAll(filepath.Join(path, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	first := Save(path, sample())
	second := Save(path, sample())
	if first == nil || second == nil {
		t.Fatalf("saves over a directory succeeded: %v, %v", first, second)
	}
	want := "write state file " + path + ": rename temporary file into place: "
	if !strings.HasPrefix(first.Error(), want) || strings.Contains(first.Error(), ".tmp-") {
		t.Errorf("got %q, want it to start with %q and not name the temporary file", first, want)
	}
	if first.Error() != second.Error() {
		t.Errorf("one cause, two messages:\n%s\n%s", first, second)
	}
	if !errors.Is(first, syscall.EEXIST) && !errors.Is(first, syscall.ENOTEMPTY) && !errors.Is(first, syscall.EISDIR) {
		t.Errorf("%v does not wrap the system's reason", first)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}
