package main

import (
	"context"
	"fmt"

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
			if err := noArgs(c, " (use --process ID)"); err != nil {
				return err
			}
			req := control.LogsRequest{Process: c.String("process")}
			res, err := ask(c, control.CmdLogs, func(cl *control.Client, ctx context.Context) (control.LogsResult, error) {
				return cl.Logs(ctx, req)
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printValue(c, res.Processes)
			}
			for i, p := range res.Processes {
				if i > 0 {
					fmt.Fprintln(c.App.Writer)
				}
				fmt.Fprintf(c.App.Writer, "== %s (%s) ==\n", p.ID, p.Source)
				for _, l := range p.Logs {
					fmt.Fprintf(c.App.Writer, "%s %s %s\n", l.At.Format(timeFormat), l.Stream, l.Line)
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
			if err := noArgs(c, " (use --limit N)"); err != nil {
				return err
			}
			if c.Int("limit") < 0 {
				return usageErrorf("--limit must be 0 or more")
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
			for _, e := range res.Events {
				fmt.Fprintf(c.App.Writer, "%s %s%s\n", e.At.Format(timeFormat), e.Message, formatData(e.Data))
			}
			return nil
		},
	}
}
