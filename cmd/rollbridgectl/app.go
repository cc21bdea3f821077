package main

import (
	"os"

	"github.com/rollbridge/rollbridge-go/internal/version"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/urfave/cli/v2"
)

func newApp() *cli.App {
	app := &cli.App{
		Name:    "rollbridgectl",
		Usage:   "control a rollbridged zero-downtime deploy supervisor",
		Version: version.Version,
		Description: "rollbridgectl validates rollbridge.jsonnet configs and talks to the running\n" +
			"rollbridged daemon over its Unix control socket (control.path).\n" +
			"Commands take -c/--config (default: rollbridge.jsonnet in the working directory);\n" +
			"the ones that talk to a running daemon also take --socket to bypass the config.",
		Commands: []*cli.Command{
			deployCommand(),
			rollbackCommand(),
			statusCommand(),
			stopCommand(),
			restartCommand(),
			logsCommand(),
			eventsCommand(),
			shutdownCommand(),
			ensureDaemonCommand(),
			validateCommand(),
			doctorCommand(),
			recoverCommand(),
			predeployCleanupCommand(),
			systemdCommand(),
			completionCommand(),
			manCommand(),
		},
		// main alone decides the exit code; urfave/cli must not call os.Exit.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageErrorf(err.Error())
		},
		HideHelpCommand: true,
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = app.OnUsageError
		cmd.HideHelpCommand = true // "help" as a subcommand only confuses completion and the man page
	}
	return app
}

// configFlag is accepted by every command.
func configFlag() cli.Flag {
	return &cli.StringFlag{
		Name:        "config",
		Aliases:     []string{"c"},
		Usage:       "config file `PATH`",
		EnvVars:     []string{"ROLLBRIDGE_CONFIG"},
		Value:       "",
		DefaultText: config.DefaultFile,
	}
}

// loadConfig loads the config named by --config with this process's environment.
func loadConfig(c *cli.Context) (*config.Config, error) {
	return config.Load(c.String("config"), config.EnvMap(os.Environ()))
}
