package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
)

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the recent output retained for each managed process",
		UsageText: "rollbridgectl logs [--process ID] [--json] [-c PATH]",
		Description: "A one-shot snapshot of each process's last outputLines lines, not a live\n" +
			"stream (under systemd, journalctl -u rollbridge@APP ROLLBRIDGE_PROCESS_ID=ID\n" +
			`follows them). --json prints [{"id","source","logs":[{"at","line","stream"}]}].`,
		Flags: daemonFlags(
			&cli.StringFlag{Name: "process", Usage: "only this process `ID` (base or instance id)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf(fmt.Sprintf("unexpected argument %q (use --process ID)", c.Args().First()))
			}
			raw, err := call(c, &control.Request{Command: control.CmdLogs, Process: c.String("process")})
			if err != nil {
				return err
			}
			var res struct {
				Processes json.RawMessage `json:"processes"`
			}
			if err := json.Unmarshal(raw, &res); err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, res.Processes)
			}
			var procs []struct {
				ID     string `json:"id"`
				Source string `json:"source"`
				Logs   []struct {
					At     time.Time `json:"at"`
					Line   string    `json:"line"`
					Stream string    `json:"stream"`
				} `json:"logs"`
			}
			if err := json.Unmarshal(res.Processes, &procs); err != nil {
				return err
			}
			for i, p := range procs {
				if i > 0 {
					fmt.Fprintln(c.App.Writer)
				}
				fmt.Fprintf(c.App.Writer, "== %s (%s) ==\n", p.ID, p.Source)
				for _, l := range p.Logs {
					fmt.Fprintf(c.App.Writer, "%s %s %s\n", l.At.Format("2006-01-02T15:04:05.000Z07:00"), l.Stream, l.Line)
				}
			}
			return nil
		},
	}
}

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:      "events",
		Usage:     "print the daemon's recent event history",
		UsageText: "rollbridgectl events [--limit N] [--json] [-c PATH]",
		Description: "The daemon keeps its last 1000 events in memory: deploys, traffic switches,\n" +
			`release stops, process starts/exits/restarts, failed commands. --json prints [{"at","message","data"}].`,
		Flags: daemonFlags(
			&cli.IntFlag{Name: "limit", Usage: "only the most recent `N` events"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf(fmt.Sprintf("unexpected argument %q (use --limit N)", c.Args().First()))
			}
			if c.Int("limit") < 0 {
				return usageErrorf("--limit must be 0 or more")
			}
			raw, err := call(c, &control.Request{Command: control.CmdEvents, Limit: c.Int("limit")})
			if err != nil {
				return err
			}
			var res struct {
				Events json.RawMessage `json:"events"`
			}
			if err := json.Unmarshal(raw, &res); err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, res.Events)
			}
			var evs []struct {
				At      time.Time      `json:"at"`
				Message string         `json:"message"`
				Data    map[string]any `json:"data"`
			}
			if err := json.Unmarshal(res.Events, &evs); err != nil {
				return err
			}
			for _, e := range evs {
				fmt.Fprintf(c.App.Writer, "%s %s%s\n", e.At.Format("2006-01-02T15:04:05.000Z07:00"), e.Message, formatData(e.Data))
			}
			return nil
		},
	}
}
