package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
)

// formatData renders progress/event data as " key=value ..." in key order.
func formatData(data map[string]any) string {
	if len(data) == 0 {
		return ""
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := data[k]
		if v == nil {
			continue
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
			if strings.ContainsAny(s, " \t\"") {
				s = fmt.Sprintf("%q", s)
			}
		default:
			j, _ := json.Marshal(x) // values came from JSON: they re-encode
			s = string(j)
		}
		fmt.Fprintf(&b, " %s=%s", k, s)
	}
	return b.String()
}

// printJSON pretty-prints a JSON document to stdout.
func printJSON(c *cli.Context, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := c.App.Writer.Write(buf.Bytes())
	return err
}

// printValue prints v as indented JSON to stdout, with <, > and & as they
// are (as JSON.stringify writes them), not escaped for HTML.
func printValue(c *cli.Context, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return printJSON(c, b.Bytes())
}

// compactJSON is v as JSON.stringify(v) writes it: compact, HTML characters
// as they are. v came from JSON, so it encodes.
func compactJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // see doc
	return strings.TrimSuffix(b.String(), "\n")
}

// jsonTime is t as the protocol writes it ("2026-06-01T10:00:05.120Z").
func jsonTime(t control.Time) string {
	b, _ := t.MarshalJSON() // cannot fail
	return strings.Trim(string(b), `"`)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
