package main

import (
	"bytes"
	"context"
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

// daemonClient returns a client for the control socket (see socketPath).
func daemonClient(c *cli.Context) (*control.Client, error) {
	path, err := socketPath(c)
	if err != nil {
		return nil, err
	}
	return &control.Client{Path: path}, nil
}

// printProgress prints a deploy's or rollback's progress lines to stderr.
func printProgress(c *cli.Context) func(control.Progress) {
	return func(p control.Progress) {
		fmt.Fprintf(c.App.ErrWriter, "rollbridgectl: %s%s\n", p.Message, formatData(p.Data))
	}
}

// daemonError turns a failed call into the command's error: an unreachable
// daemon exits 3, anything else names the command.
func daemonError(command string, err error) error {
	if errors.Is(err, control.ErrUnreachable) {
		return &exitError{code: exitUnreachable, msg: err.Error()}
	}
	return fmt.Errorf("%s: %w", command, err)
}

// callDaemon runs one call against the daemon and prints its result the way
// the daemon sent it (see printResult).
func callDaemon[R control.Result](c *cli.Context, command string, call func(cl *control.Client, ctx context.Context) (R, error)) error {
	cl, err := daemonClient(c)
	if err != nil {
		return err
	}
	r, err := call(cl, c.Context)
	if err != nil {
		return daemonError(command, err)
	}
	return printResult(c, r)
}

// printResult prints a result as the daemon's final line, indented:
// {"status":"success", ...}.
func printResult[R control.Result](c *cli.Context, r R) error {
	b, err := control.EncodeResult(r)
	if err != nil {
		return err
	}
	return printJSON(c, b)
}

// noArgs refuses positional arguments: every value is a flag.
func noArgs(c *cli.Context, hint string) error {
	if c.NArg() > 0 {
		return usageErrorf(fmt.Sprintf("unexpected argument %q%s", c.Args().First(), hint))
	}
	return nil
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
