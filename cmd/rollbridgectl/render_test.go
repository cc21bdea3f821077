package main

import (
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
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

// TestControlCharactersNeverReachTheTerminalRaw: text from the daemon is
// printed with its control characters escaped, whatever the command.
func TestControlCharactersNeverReachTheTerminalRaw(t *testing.T) {
	at := control.At(time.Date(2026, 6, 1, 11, 0, 3, 0, time.UTC))
	evil := "a\x1b]0;owned\x07b\x1b[2J\u009b31m\x7fc"
	for _, tc := range []struct {
		name, got, want string
	}{
		{"event", formatEvents([]control.Event{{At: at, Message: evil, Data: map[string]any{"releaseId": evil}}}),
			`2026-06-01T11:00:03.000Z  a\x1b]0;owned\x07b\x1b[2J\u009b31m\x7fc {"releaseId":"a\u001b]0;owned\u0007b\u001b[2J\u009b31m\u007fc"}` + "\n"},
		{"logs", formatLogs([]control.ProcessLogs{{ID: evil, Source: "release " + evil, Logs: []control.LogLine{{At: at, Line: evil + "\nz", Stream: "stdout"}}}}, false, ""),
			`== a\x1b]0;owned\x07b\x1b[2J\u009b31m\x7fc [release a\x1b]0;owned\x07b\x1b[2J\u009b31m\x7fc] ==` + "\n" +
				`  2026-06-01T11:00:03.000Z [stdout] a\x1b]0;owned\x07b\x1b[2J\u009b31m\x7fc\nz` + "\n"},
		{"progress data", formatData(map[string]any{"releaseId": evil}), ` releaseId="a\x1b]0;owned\ab\x1b[2J\u009b31m\x7fc"`},
		{"error text", printable("line one\n\tline two " + evil), "line one\n\tline two " + `a\x1b]0;owned\x07b\x1b[2J\u009b31m\x7fc`},
		{"json", string(escapeJSONControls([]byte(`{"id":"a` + "\u009b\x7f" + `é"}`))), `{"id":"a\u009b\u007fé"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", tc.got, tc.want)
			}
		})
	}
}

// TestProcessOutputIsEscapedInLogsAndStatus runs a worker that writes
// terminal escape sequences and reads its output back through logs and
// status, as an operator would.
func TestProcessOutputIsEscapedInLogsAndStatus(t *testing.T) {
	e := startDaemon(t, `[{id: 'noisy', command: @"printf '\033]0;owned\007\033[2J\302\233hello\n'; exec sleep 1000"}]`)
	e.deploy("v1", nil)
	var out string
	testutil.Eventually(t, "the worker's line in logs", func() bool {
		out, _, _ = e.ctl("logs", "--process", "noisy")
		return strings.Contains(out, "hello")
	})
	if want := `[stdout] \x1b]0;owned\x07\x1b[2J\u009bhello`; !strings.Contains(out, want) {
		t.Errorf("logs printed %q, want it to contain %q", out, want)
	}
	for _, args := range [][]string{{"logs", "--process", "noisy"}, {"logs", "--json"}, {"status"}, {"events"}, {"events", "--json"}} {
		stdout, stderr, code := e.ctl(args...)
		if code != 0 || hasControl(strings.NewReplacer("\n", "", "\t", "").Replace(stdout+stderr)) {
			t.Errorf("%v: exit %d, printed a raw control character:\n%q\n%q", args, code, stdout, stderr)
		}
	}
}
