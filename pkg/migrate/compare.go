package migrate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/rollbridge/rollbridge-go/pkg/config"
)

// Difference is one field where two normalised configs disagree. A side
// where the field is absent is "".
type Difference struct {
	Path    string `json:"path"`
	JS      string `json:"js"`      // JSON text of the value from the JavaScript config
	Jsonnet string `json:"jsonnet"` // JSON text of the value from the Jsonnet file
}

func (d Difference) String() string {
	show := func(s string) string {
		if s == "" {
			return "(absent)"
		}
		return s
	}
	return fmt.Sprintf("%s: the JavaScript config gives %s, the Jsonnet file %s", d.Path, show(d.JS), show(d.Jsonnet))
}

// Compare lists the fields where the normalised configs js and jsonnet
// differ, in path order; none means they are equivalent. Both are
// compared in their JSON form, the one `rollbridgectl validate --json`
// prints as "normalized"; where they were loaded from (Config.Path) does
// not count.
func Compare(js, jsonnet *config.Config) ([]Difference, error) {
	a, err := generic(js)
	if err != nil {
		return nil, err
	}
	b, err := generic(jsonnet)
	if err != nil {
		return nil, err
	}
	var out []Difference
	diff(a, b, nil, &out)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func generic(c *config.Config) (any, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode the normalised config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode the normalised config: %w", err)
	}
	return v, nil
}

func text(v any, present bool) string {
	if !present {
		return ""
	}
	b, _ := json.Marshal(v) // a value decoded from JSON marshals again
	return string(b)
}

func diff(a, b any, p []pathElem, out *[]Difference) {
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			keys := map[string]bool{}
			for k := range av {
				keys[k] = true
			}
			for k := range bv {
				keys[k] = true
			}
			sorted := make([]string, 0, len(keys))
			for k := range keys {
				sorted = append(sorted, k)
			}
			sort.Strings(sorted)
			for _, k := range sorted {
				x, xok := av[k]
				y, yok := bv[k]
				if !xok || !yok {
					*out = append(*out, Difference{pathString(extend(p, k)), text(x, xok), text(y, yok)})
					continue
				}
				diff(x, y, extend(p, k), out)
			}
			return
		}
	case []any:
		if bv, ok := b.([]any); ok && len(av) == len(bv) {
			for i := range av {
				diff(av[i], bv[i], extend(p, i), out)
			}
			return
		}
	}
	if ta, tb := text(a, true), text(b, true); ta != tb {
		*out = append(*out, Difference{pathString(p), ta, tb})
	}
}
