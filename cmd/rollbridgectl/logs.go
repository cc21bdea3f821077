package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
)

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the recent output retained for each managed process",
		UsageText: "rollbridgectl logs [--process ID] [--json] [-c PATH]",
		Description: "A one-shot snapshot of each process's retained output (its last outputLines\n" +
			"lines, at most 1 MiB), not a live stream (under systemd, journalctl\n" +
			"ROLLBRIDGE_APPLICATION=APP ROLLBRIDGE_PROCESS_ID=ID follows them). Asks the daemon's\n" +
			"logs command; a daemon that does not know it (the Node original) is read through\n" +
			"its status instead.\n" +
			`--json prints [{"id","logs":[{"at","line","stream"}],"source"}].`,
		Flags: daemonFlags(
			&cli.StringFlag{Name: "process", Usage: "only the process with this instance `ID` (web, worker#0), as status shows it"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, " (use --process ID)"); err != nil {
				return err
			}
			sources, err := fetchLogs(c)
			if err != nil {
				return err
			}
			if c.IsSet("process") {
				want := c.String("process")
				matched := []control.ProcessLogs{}
				for _, s := range sources {
					if s.ID == want {
						matched = append(matched, s)
					}
				}
				sources = matched
			}
			if c.Bool("json") {
				return printValue(c, sources)
			}
			_, err = io.WriteString(c.App.Writer, formatLogs(sources, c.IsSet("process"), c.String("process")))
			return err
		},
	}
}

// fetchLogs asks the daemon for the retained output: all of it through
// the logs command (status carries only the newest lines of each
// process), or, from a daemon that does not know that command (the Node
// original answers it with an error without a code), through status.
// With --process, the daemon is asked for that id only; a daemon that
// has no such process answers not_found, which is an empty list here
// (the caller then says so, as for a status that lacks it).
func fetchLogs(c *cli.Context) ([]control.ProcessLogs, error) {
	cl, err := daemonClient(c)
	if err != nil {
		return nil, err
	}
	res, err := cl.Logs(c.Context, control.LogsRequest{ProcessID: c.String("process")})
	var werr *control.Error
	switch {
	case err == nil:
		return res.Processes, nil
	case c.IsSet("process") && errors.Is(err, control.ErrNotFound):
		return []control.ProcessLogs{}, nil
	case errors.Is(err, control.ErrUnknownCommand) || errors.As(err, &werr) && werr.Code == "":
		st, err := cl.Status(c.Context)
		if err != nil {
			return nil, daemonError(control.CmdLogs, err)
		}
		return logSources(st), nil
	}
	return nil, daemonError(control.CmdLogs, err)
}

// logSources lists every process of a status with its output and where it
// belongs, in the status's order: each release's processes (oldest release
// first), then the services, then the singletons.
func logSources(st control.Status) []control.ProcessLogs {
	out := []control.ProcessLogs{}
	for _, r := range st.Releases {
		for _, p := range r.Processes {
			out = append(out, control.ProcessLogs{ID: p.ID, Logs: p.Logs, Source: fmt.Sprintf("release %s (%s)", r.ReleaseID, r.State)})
		}
	}
	for _, u := range st.Services {
		out = append(out, control.ProcessLogs{ID: u.Process.ID, Logs: u.Process.Logs, Source: "service"})
	}
	for _, u := range st.Singletons {
		out = append(out, control.ProcessLogs{ID: u.Process.ID, Logs: u.Process.Logs, Source: "singleton"})
	}
	for i := range out {
		if out[i].Logs == nil {
			out[i].Logs = []control.LogLine{}
		}
	}
	return out
}

// formatLogs renders sources as the original's `logs` does: a
// "== id [source] ==" block per process, its lines indented with the
// stream in brackets, blocks separated by a blank line; or one sentence
// when there is nothing to show.
func formatLogs(sources []control.ProcessLogs, filtered bool, id string) string {
	if len(sources) == 0 {
		if filtered {
			return fmt.Sprintf("No process found with id %q.\n", id)
		}
		return "No managed processes.\n"
	}
	var b strings.Builder
	for i, s := range sources {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "== %s [%s] ==\n", printable(s.ID), printable(s.Source))
		if len(s.Logs) == 0 {
			b.WriteString("  (no recent output)\n")
		}
		for _, l := range s.Logs {
			// A line is one line: a newline in it is escaped too.
			fmt.Fprintf(&b, "  %s [%s] %s\n", jsonTime(l.At), printable(l.Stream), strings.ReplaceAll(printable(l.Line), "\n", `\n`))
		}
	}
	return b.String()
}

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:      "events",
		Usage:     "print the daemon's recent event history",
		UsageText: "rollbridgectl events [--limit N] [--json] [-c PATH]",
		Description: "The daemon keeps its last 1000 events in memory: deploys, traffic switches,\n" +
			"release stops, process starts/exits/restarts, failed commands. One line per event,\n" +
			`"<at>  <message> <data as JSON>"; --json prints [{"at","data","message"}].`,
		Flags: daemonFlags(
			&cli.IntFlag{Name: "limit", Usage: "only the most recent `N` events (N >= 1)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, " (use --limit N)"); err != nil {
				return err
			}
			if c.IsSet("limit") && c.Int("limit") < 1 {
				return usageErrorf("--limit must be a positive integer.")
			}
			req := control.EventsRequest{Limit: c.Int("limit")}
			res, err := ask(c, control.CmdEvents, func(cl *control.Client, ctx context.Context) (control.EventsResult, error) {
				return cl.Events(ctx, req)
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printValue(c, res.Events)
			}
			_, err = io.WriteString(c.App.Writer, formatEvents(res.Events))
			return err
		},
	}
}

// formatEvents renders events as the original's `events` does:
// "<at>␠␠<message>", then a space and the data as compact JSON unless it is
// empty; "No events recorded yet." when there are none.
func formatEvents(evs []control.Event) string {
	if len(evs) == 0 {
		return "No events recorded yet.\n"
	}
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(jsonTime(e.At))
		b.WriteString("  ")
		b.WriteString(printable(e.Message))
		if len(e.Data) > 0 {
			b.WriteByte(' ')
			b.WriteString(compactJSON(e.Data))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
