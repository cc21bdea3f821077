package main

import (
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// TestTextRenderersMatchTheSpec pins the exact text of logs and events for
// the inputs the original's docs and code show, including the sentences
// printed when there is nothing to show.
func TestTextRenderersMatchTheSpec(t *testing.T) {
	at := control.At(time.Date(2026, 6, 1, 11, 0, 3, 1_000_000, time.UTC))
	for _, tc := range []struct {
		name, got, want string
	}{
		{"events", formatEvents([]control.Event{
			{At: at, Message: "traffic switched", Data: map[string]any{"previousReleaseId": "v1", "releaseId": "v2"}},
			{At: at, Message: "daemon stopping", Data: map[string]any{}},
			{At: at, Message: "stop command failed", Data: map[string]any{"error": "<exit 2> & more"}},
		}), `2026-06-01T11:00:03.001Z  traffic switched {"previousReleaseId":"v1","releaseId":"v2"}
2026-06-01T11:00:03.001Z  daemon stopping
2026-06-01T11:00:03.001Z  stop command failed {"error":"<exit 2> & more"}
`},
		{"no events", formatEvents(nil), "No events recorded yet.\n"},
		{"logs", formatLogs([]control.ProcessLogs{
			{ID: "web", Source: "release v2 (active)", Logs: []control.LogLine{{At: at, Line: "listening", Stream: "stdout"}, {At: at, Line: "slow", Stream: "stderr"}}},
			{ID: "beacon", Source: "service", Logs: []control.LogLine{}},
		}, false, ""), `== web [release v2 (active)] ==
  2026-06-01T11:00:03.001Z [stdout] listening
  2026-06-01T11:00:03.001Z [stderr] slow

== beacon [service] ==
  (no recent output)
`},
		{"no processes", formatLogs(nil, false, ""), "No managed processes.\n"},
		{"no match", formatLogs(nil, true, "worker"), "No process found with id \"worker\".\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", tc.got, tc.want)
			}
		})
	}
}
