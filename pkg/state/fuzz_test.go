package state

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the state-file loader (the file comes
// from disk and may be torn, foreign or hostile): it must never panic, it
// must refuse with a *CorruptError what it cannot use, and what it loads
// must survive a save and a load again unchanged — apart from what Save
// keeps out of the file on purpose, which a second round trip then keeps.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		`{"version":1,"application":"a","savedAt":"2026-01-01T00:00:00Z","daemonPid":1,"stopped":false,"releases":[],"processes":[],"events":[]}`,
		`{"version":1,"activeReleaseId":"v1","releases":[{"id":"v1","path":"/srv/a","state":"active","ports":{"web":1}}],"processes":[{"id":"web","processId":"web","policy":"proxied","pid":12,"startTime":99}]}`,
		`{"version":1,"events":[{"at":"2026-01-01T00:00:00Z","message":"deploy failed","data":{"output":{"web":["secret"]},"error":"x","nested":[{"env":{"K":"v"}}]}}]}`,
		`{"version":2}`, `{"version":1,"releases":{}}`, `[]`, `null`, ``, `{"version":1e400}`,
		`{"application":"node","releases":[],"processes":[{"pid":3}]}`,
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "state.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Load(p)
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Load refused with %T %v, want *CorruptError", err, err)
			}
			return
		}
		if err := Save(p, s); err != nil {
			t.Fatalf("Save of a loaded snapshot: %v", err)
		}
		once, err := Load(p)
		if err != nil {
			t.Fatalf("Load after Save: %v", err)
		}
		if err := Save(p, once); err != nil {
			t.Fatalf("second Save: %v", err)
		}
		twice, err := Load(p)
		if err != nil {
			t.Fatalf("second Load: %v", err)
		}
		if !reflect.DeepEqual(once, twice) {
			t.Fatalf("a saved snapshot changes when saved again:\n%+v\n%+v", once, twice)
		}
	})
}
