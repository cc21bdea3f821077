package main

import (
	"fmt"

	"github.com/rollbridge/rollbridge-go/pkg/takeover"
	"github.com/urfave/cli/v2"
)

func recoverCommand() *cli.Command {
	return &cli.Command{
		Name:      "recover",
		Usage:     "list (or with --force stop) processes a crashed daemon left running",
		UsageText: "rollbridgectl recover [-c PATH] [--force]",
		Description: "Reads statePath and lists the recorded processes that still run (same pid and\n" +
			"start time). With --force each one's process group gets SIGTERM, then SIGKILL after\n" +
			"proxy.forceStopTimeoutMs, and the state file is removed. If any survives, the file\n" +
			"is kept and the command exits 1. Refuses while a daemon holds the control socket.\n" +
			`Prints {"orphans":[{"id","pid","releaseId"}],"stopped":[...],"stillRunning":[...],"stateFileRemoved":bool}.`,
		Flags:  []cli.Flag{configFlag(), &cli.BoolFlag{Name: "force", Usage: "stop the orphans and clear the state file"}},
		Action: runRecover,
	}
}

func runRecover(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return configError(err)
	}
	res, err := takeover.Recover(c.Context, cfg, c.Bool("force"))
	if err != nil {
		return err
	}
	if err := printValue(c, res); err != nil {
		return err
	}
	if len(res.StillRunning) > 0 {
		return fmt.Errorf("%d orphaned processes could not be stopped (kept %s so you can investigate and re-run recover)", len(res.StillRunning), res.StatePath)
	}
	return nil
}
