package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
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
