package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

var completionShells = []string{"bash", "zsh", "fish"}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		UsageText: "rollbridgectl completion bash|zsh|fish",
		Description: "Generated from the command set itself, so it never drifts from the real commands\n" +
			"and flags. Enable it with: source <(rollbridgectl completion bash)",
		Action: func(c *cli.Context) error {
			shell := c.Args().First()
			var script string
			switch shell {
			case "bash":
				script = bashCompletion(c.App)
			case "zsh":
				script = "#compdef rollbridgectl\nautoload -U +X bashcompinit && bashcompinit\n" + bashCompletion(c.App)
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				script = s
			default:
				return fmt.Errorf("unsupported shell %q; supported: %s", shell, strings.Join(completionShells, ", "))
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:      "man",
		Usage:     "print the man page (roff), generated from the command set",
		UsageText: "rollbridgectl man > rollbridgectl.1",
		Action: func(c *cli.Context) error {
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}
