package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
	"unicode/utf8"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
)

func pauseCommand() *cli.Command {
	return &cli.Command{
		Name:      "pause",
		Usage:     "hold every new request (a migration, a database failover) until resume or the timeout",
		UsageText: "rollbridgectl pause [--timeout D] [--drain] [-c PATH]",
		Description: "New requests wait in the proxy instead of reaching the release; the release keeps\n" +
			"running. They are released to the active release by `rollbridgectl resume`, or when the\n" +
			"pause's timeout passes (default proxy.pauseTimeoutMs, at most proxy.maxPauseTimeoutMs),\n" +
			"a few at a time (proxy.holdRelease). Past proxy.maxHeld waiting requests, one more is\n" +
			"answered 503 with Retry-After. Pausing again while paused sets a new timeout.\n" +
			"With --drain, answers once the HTTP requests in flight have finished (WebSockets stay\n" +
			"open), so the next step of a migration starts with nothing in flight; it fails if they\n" +
			"do not finish before the timeout (the pause has then ended).\n" +
			`Prints {"status":"success","paused":true,"pausedUntil":...,"held":N,...}. See docs/traffic.md.`,
		Flags: daemonFlags(
			&cli.DurationFlag{Name: "timeout", Usage: "release the held requests after `D` at the latest (default: proxy.pauseTimeoutMs)"},
			&cli.BoolFlag{Name: "drain", Usage: "answer once the requests in flight have finished"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			req := control.PauseRequest{Drain: c.Bool("drain")}
			if c.IsSet("timeout") {
				d := c.Duration("timeout")
				if d < time.Millisecond {
					return usageErrorf("--timeout must be at least 1ms")
				}
				req.TimeoutMs = d.Milliseconds()
			}
			return callDaemon(c, control.CmdPause, func(cl *control.Client, ctx context.Context) (control.TrafficResult, error) {
				return cl.Pause(ctx, req)
			})
		},
	}
}

func resumeCommand() *cli.Command {
	return &cli.Command{
		Name:      "resume",
		Usage:     "end a pause: the held requests go to the active release",
		UsageText: "rollbridgectl resume [-c PATH]",
		Description: "Releases the requests a pause holds, a few at a time (proxy.holdRelease), and forwards\n" +
			"new ones again. Succeeds when not paused too, so a script may always call it.\n" +
			`Prints {"status":"success","paused":false,...}.`,
		Flags: daemonFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			return callDaemon(c, control.CmdResume, (*control.Client).Resume)
		},
	}
}

func maintenanceCommand() *cli.Command {
	on := &cli.Command{
		Name:      "on",
		Usage:     "answer every request 503 with a maintenance page",
		UsageText: "rollbridgectl maintenance on [--message M] [--page FILE] [-c PATH]",
		Description: "Every request is answered 503 with Retry-After (proxy.maintenance.retryAfterMs) and a\n" +
			"page: JSON ({\"error\":\"maintenance\",\"message\":M,\"retryAfter\":S}) for a client that\n" +
			"asks for JSON rather than HTML, HTML otherwise: FILE's content, or a default page with\n" +
			"M. rollbridgectl reads FILE (at most 256 KiB of UTF-8) and sends its content: the\n" +
			"daemon opens no path. Requests matching proxy.maintenance's bypass (a header or cookie\n" +
			"carrying bypassToken, or a client in bypassClients) reach the release as usual.\n" +
			"Maintenance survives daemon restarts (it is in the state file) until `maintenance off`.\n" +
			"Turning it on again replaces the message and page.",
		Flags: daemonFlags(
			&cli.StringFlag{Name: "message", Usage: "the text `M` of the default page and of the JSON answer"},
			&cli.PathFlag{Name: "page", Usage: "send `FILE` (HTML) as the page instead of the default one"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			req := control.MaintenanceRequest{On: true, Message: c.String("message")}
			if path := c.Path("page"); path != "" {
				page, err := readPage(path)
				if err != nil {
					return usageErrorf(err.Error())
				}
				req.Page = page
			}
			return callDaemon(c, control.CmdMaintenance, func(cl *control.Client, ctx context.Context) (control.TrafficResult, error) {
				return cl.Maintenance(ctx, req)
			})
		},
	}
	off := &cli.Command{
		Name:        "off",
		Usage:       "end maintenance: requests reach the release again",
		UsageText:   "rollbridgectl maintenance off [-c PATH]",
		Description: "Succeeds when maintenance is off too.",
		Flags:       daemonFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			return callDaemon(c, control.CmdMaintenance, func(cl *control.Client, ctx context.Context) (control.TrafficResult, error) {
				return cl.Maintenance(ctx, control.MaintenanceRequest{})
			})
		},
	}
	return &cli.Command{
		Name:            "maintenance",
		Usage:           "turn maintenance mode on or off",
		UsageText:       "rollbridgectl maintenance on|off [flags]",
		Subcommands:     []*cli.Command{on, off},
		HideHelpCommand: true,
	}
}

// readPage reads a maintenance page, refusing one over the protocol's
// limit or not in UTF-8 (JSON would mangle it on the way).
func readPage(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--page: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, control.MaxPageBytes+1))
	if err != nil {
		return "", fmt.Errorf("--page: read %s: %w", path, err)
	}
	if len(b) > control.MaxPageBytes {
		return "", fmt.Errorf("--page: %s is larger than %d KiB; keep the page small and link to assets elsewhere", path, control.MaxPageBytes>>10)
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("--page: %s is not UTF-8 text", path)
	}
	return string(b), nil
}
