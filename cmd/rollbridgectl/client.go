package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
)

// socketFlag overrides control.path from the config.
func socketFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "socket",
		Usage:   "control socket `PATH` (default: control.path from the config)",
		EnvVars: []string{"ROLLBRIDGE_SOCKET"},
	}
}

// daemonFlags are the flags of every command that talks to the daemon.
func daemonFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{configFlag(), socketFlag()}, extra...)
}

// socketPath resolves the control socket: --socket, else the config's.
func socketPath(c *cli.Context) (string, error) {
	if p := c.String("socket"); p != "" {
		return p, nil
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return "", configError(err)
	}
	return cfg.Control.Path, nil
}

// configError turns a config problem into one readable error.
func configError(err error) error {
	var issues config.Issues
	if errors.As(err, &issues) {
		var b strings.Builder
		fmt.Fprintf(&b, "the config has %d %s (run rollbridgectl validate for fixes):", len(issues), plural(len(issues), "issue", "issues"))
		for _, is := range issues {
			b.WriteString("\n  - " + is.Message)
		}
		return errors.New(b.String())
	}
	return err
}

// call sends one request and returns the daemon's final line. Progress
// lines go to stderr; failures become exit codes.
func call(c *cli.Context, req *control.Request) (json.RawMessage, error) {
	path, err := socketPath(c)
	if err != nil {
		return nil, err
	}
	progress := func(p control.Progress) {
		fmt.Fprintf(c.App.ErrWriter, "rollbridgectl: %s%s\n", p.Message, formatData(p.Data))
	}
	raw, err := (&control.Client{Path: path}).Do(c.Context, req, progress)
	if err != nil {
		if errors.Is(err, control.ErrUnreachable) {
			return nil, &exitError{code: exitUnreachable, msg: err.Error()}
		}
		return nil, fmt.Errorf("%s: %w", req.Command, err)
	}
	return raw, nil
}

// formatData renders progress/event data as " key=value ..." in key order.
func formatData(data map[string]any) string {
	if len(data) == 0 {
		return ""
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := data[k]
		if v == nil {
			continue
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
			if strings.ContainsAny(s, " \t\"") {
				s = fmt.Sprintf("%q", s)
			}
		default:
			j, _ := json.Marshal(x) // values came from JSON: they re-encode
			s = string(j)
		}
		fmt.Fprintf(&b, " %s=%s", k, s)
	}
	return b.String()
}

// printJSON pretty-prints a JSON document to stdout.
func printJSON(c *cli.Context, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := c.App.Writer.Write(buf.Bytes())
	return err
}

// jsonAction runs a command whose output is the daemon's answer as JSON.
func jsonAction(build func(c *cli.Context) (*control.Request, error)) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() > 0 {
			return usageErrorf(fmt.Sprintf("unexpected argument %q", c.Args().First()))
		}
		req, err := build(c)
		if err != nil {
			return err
		}
		raw, err := call(c, req)
		if err != nil {
			return err
		}
		return printJSON(c, raw)
	}
}
