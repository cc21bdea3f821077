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
			if strings.ContainsAny(s, " \t\"") || hasControl(s) {
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
	_, err := c.App.Writer.Write(escapeJSONControls(buf.Bytes()))
	return err
}

// Text from the daemon — ids, events, process output, error messages —
// may carry control characters: an escape sequence can clear a terminal,
// retitle it, rewrite what was printed before, or (on some terminals)
// make it answer with input of its own. None reaches the terminal raw.

// isControl reports whether r is a C0 or C1 control character or DEL.
func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r <= 0x9f }

func hasControl(s string) bool {
	return strings.IndexFunc(s, isControl) >= 0
}

// printable is s with every control character but newline and tab written
// as its Go escape (\x1b, \u009b).
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return isControl(r) && r != '\n' && r != '\t' }) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t' || !isControl(r):
			b.WriteRune(r)
		case r < 0x80:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

// escapeJSONControls writes DEL and the C1 controls in JSON text as \u
// escapes (encoding/json escapes only the C0 ones). They can only stand
// inside strings, where the escape means the same character.
func escapeJSONControls(b []byte) []byte {
	if !bytes.ContainsRune(b, 0x7f) && !bytes.ContainsFunc(b, func(r rune) bool { return r >= 0x80 && r <= 0x9f }) {
		return b
	}
	var out bytes.Buffer
	for _, r := range string(b) {
		if r == 0x7f || r >= 0x80 && r <= 0x9f {
			fmt.Fprintf(&out, "\\u%04x", r)
			continue
		}
		out.WriteRune(r)
	}
	return out.Bytes()
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
	return strings.TrimSuffix(string(escapeJSONControls(b.Bytes())), "\n")
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
