package state

import (
	"encoding/json"
	"fmt"

	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// secretKey reports whether a key names something that may carry a secret:
// a command line or working directory (tokens are passed as arguments or
// sit in paths), an environment, or a process's output (apps print their
// configuration). The list is the Node original's since 0.1.17. The state
// file is often readable by more people than the daemon's journal, and it
// outlives the daemon, so such keys never reach it, at any depth.
func secretKey(k string) bool {
	switch k {
	case "children", "command", "cwd", "env", "environment", "logs", "output":
		return true
	}
	return false
}

// scrubEvents returns copies of evs whose data holds no secretKey at any
// depth. The originals are left alone: they are the live event history,
// which rollbridgectl events shows in full.
func scrubEvents(evs []events.Event) ([]events.Event, error) {
	if evs == nil {
		return nil, nil
	}
	out := make([]events.Event, len(evs))
	for i, e := range evs {
		// Data holds whatever an emitter passed (maps, slices, structs);
		// its JSON form is what the file records, so the keys are removed
		// from that form, where every nested object is a map.
		b, err := json.Marshal(e.Data)
		if err != nil {
			return nil, fmt.Errorf("encode the data of event %q: %w", e.Message, err)
		}
		var data map[string]any
		if err := json.Unmarshal(b, &data); err != nil {
			return nil, fmt.Errorf("decode the data of event %q: %w", e.Message, err)
		}
		out[i] = events.Event{At: e.At, Message: e.Message, Data: scrubMap(data)}
	}
	return out, nil
}

func scrubMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	for k, v := range m {
		if secretKey(k) {
			delete(m, k)
			continue
		}
		m[k] = scrubValue(v)
	}
	return m
}

func scrubValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return scrubMap(x)
	case []any:
		for i := range x {
			x[i] = scrubValue(x[i])
		}
	}
	return v
}
