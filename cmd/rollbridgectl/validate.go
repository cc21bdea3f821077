package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/urfave/cli/v2"
)

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a config without starting the daemon",
		UsageText: "rollbridgectl validate [-c PATH] [--json]",
		Description: "Evaluates the Jsonnet config and reports every problem at once, each with a fix.\n" +
			"Exits 0 when the config is valid and 1 when it is not.",
		Flags: []cli.Flag{
			configFlag(),
			&cli.BoolFlag{Name: "json", Usage: `print {"config", "issues", "path", "valid", "normalized"} as JSON`},
		},
		Action: runValidate,
	}
}

// validateResult is what validate --json prints: the Node original's
// object, plus the normalized config (every default filled in) under a key
// of its own, so "config" keeps the original's meaning.
type validateResult struct {
	Config     *configSummary `json:"config"` // null when invalid
	Issues     []config.Issue `json:"issues"`
	Path       string         `json:"path"`
	Valid      bool           `json:"valid"`
	Normalized *config.Config `json:"normalized,omitempty"` // left out when invalid
}

// configSummary is the original's "config": what a deploy script checks.
type configSummary struct {
	Application string `json:"application"`
	Processes   int    `json:"processes"` // how many entries processes has
	Proxy       struct {
		Host string `json:"host"`
		Port int    `json:"port"`
	} `json:"proxy"`
}

func summarize(cfg *config.Config) *configSummary {
	s := &configSummary{Application: cfg.Application, Processes: len(cfg.Processes)}
	s.Proxy.Host, s.Proxy.Port = cfg.Proxy.Host, cfg.Proxy.Port
	return s
}

func runValidate(c *cli.Context) error {
	cfg, err := loadConfig(c)
	res := validateResult{Issues: []config.Issue{}, Valid: err == nil}
	res.Path = displayPath(c.String("config"), cfg)
	var issues config.Issues
	var evalErr *config.EvalError
	var notFound *config.NotFoundError
	var limit *config.LimitError
	switch {
	case err == nil:
		res.Config, res.Normalized = summarize(cfg), cfg
	case errors.As(err, &issues):
		res.Issues = issues
	case errors.As(err, &evalErr):
		res.Issues = []config.Issue{{Message: evalErr.Message, Fix: "Fix the Jsonnet error at the file:line:column shown."}}
	case errors.As(err, &limit):
		fix := "Look for a recursion that never ends or a structure that grows without bound; if the config is simply that large, raise " + config.EnvEvalTimeout + "."
		if limit.Memory {
			fix = "Look for a structure that grows without bound; if the config is simply that large, raise " + config.EnvEvalMemory + "."
		}
		res.Issues = []config.Issue{{Message: limit.Error(), Fix: fix}}
	case errors.As(err, &notFound):
		res.Path = notFound.Path
		res.Issues = []config.Issue{{Message: notFound.Error(), Fix: "Create the file or pass -c/--config PATH."}}
	default:
		return err
	}
	out := c.App.Writer
	if c.Bool("json") {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
		if _, err := out.Write(escapeJSONControls(b.Bytes())); err != nil {
			return err
		}
	} else if res.Valid {
		fmt.Fprintf(out, "%s is valid: application %q, %d %s, proxy on %s\n", res.Path, cfg.Application,
			len(cfg.Processes), plural(len(cfg.Processes), "process", "processes"), cfg.ProxyAddr())
	} else {
		// On stderr, as the Node original prints them: a script that keeps
		// stdout sees only a valid config's summary.
		w := c.App.ErrWriter
		fmt.Fprintf(w, "Found %d configuration %s in %s:\n", len(res.Issues), plural(len(res.Issues), "issue", "issues"), res.Path)
		for i, is := range res.Issues {
			fmt.Fprintf(w, "\n%d. %s\n   Fix: %s\n", i+1, printable(is.Message), printable(is.Fix))
		}
	}
	if !res.Valid {
		return silentFailure
	}
	return nil
}

// displayPath shows the path the way the user gave it, or the default name.
func displayPath(flag string, cfg *config.Config) string {
	switch {
	case flag != "":
		return flag
	case cfg != nil && cfg.Path != "":
		return filepath.Base(cfg.Path)
	}
	return config.DefaultFile
}
