package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// timeFormat is how text output shows a timestamp (UTC, milliseconds).
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

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

// printValue prints v as indented JSON to stdout.
func printValue(c *cli.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return printJSON(c, b)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
