package main

import (
	"context"
	"fmt"
	"io"

	"github.com/rollbridge/rollbridge-go/internal/version"
	"github.com/urfave/cli/v2"
)

// run runs rollbridgectl with args (args[0] is the program name), writing
// to stdout and stderr, and returns the exit code. main and the tests share
// it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp()
	app.Writer, app.ErrWriter = stdout, stderr
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(stderr, "rollbridgectl:", printable(msg))
	}
	return exitCode(err)
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "rollbridgectl",
		Usage:   "control a rollbridged zero-downtime deploy supervisor",
		Version: version.Version,
		Description: "rollbridgectl validates rollbridge.jsonnet configs and talks to the running\n" +
			"rollbridged daemon over its Unix control socket (control.path).\n" +
			"Commands take -c/--config (default: rollbridge.jsonnet in the working directory);\n" +
			"the ones that talk to a running daemon also take --socket to bypass the config.\n" +
			"With --host ssh://USER@HOST[:PORT] (or ROLLBRIDGE_HOST), those commands go to the\n" +
			"daemon on that host through ssh, and -c/--socket name paths there.",
		Commands: []*cli.Command{
			deployCommand(),
			rollbackCommand(),
			rolloutCommand(),
			statusCommand(),
			stopCommand(),
			restartCommand(),
			logsCommand(),
			eventsCommand(),
			shutdownCommand(),
			drainHostCommand(),
			undrainHostCommand(),

			pauseCommand(),
			resumeCommand(),
			maintenanceCommand(),
			ensureDaemonCommand(),
			validateCommand(),
			configCommand(),
			doctorCommand(),
			recoverCommand(),
			predeployCleanupCommand(),
			systemdCommand(),
			completionCommand(),
			manCommand(),
			dialStdioCommand(),
		},
		Flags: hostFlags(),
		// run alone turns errors into exit codes; urfave/cli must not exit.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageErrorf(err.Error())
		},
		HideHelpCommand: true,
	}
	for _, cmd := range app.Commands {
		if !isRemoteCommand(cmd.Name) && cmd.Name != "dial-stdio" {
			cmd.Before = refuseHost
		}
		cmd.OnUsageError = app.OnUsageError
		cmd.HideHelpCommand = true // "help" as a subcommand only confuses completion and the man page
	}
	return app
}
