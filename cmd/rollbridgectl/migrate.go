package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/migrate"
	"github.com/urfave/cli/v2"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "config file helpers",
		Subcommands: []*cli.Command{{
			Name:      "migrate",
			Usage:     "translate the Node original's rollbridge.js into rollbridge.jsonnet and prove them equivalent",
			UsageText: "rollbridgectl config migrate FILE.js [--env K=V ...] [-o PATH] [--force] [--compare PATH]",
			Description: "Evaluates the JavaScript config module as the original does (export default or\n" +
				"module.exports; an object, or a sync or async function returning one; relative imports\n" +
				"and requires of local modules; process.env from this environment plus --env), in an\n" +
				"embedded JavaScript engine. Writes the same fields in the same order as Jsonnet, with\n" +
				"std.extVar('env') where the module read process.env, and the module's comments where\n" +
				"they have a place. Then loads the Jsonnet file and compares the normalised config of\n" +
				"both: any field that differs is listed. Exits 0 when they are equivalent and nothing\n" +
				"needed a warning, 1 otherwise (the file is still written, for you to finish).\n" +
				"With --compare, nothing is written: the module is compared with an existing Jsonnet file.",
			Flags: []cli.Flag{
				&cli.StringSliceFlag{Name: "env", Usage: "set process.env.K (and std.extVar('env').K) to V for this run, `K=V` (repeatable)"},
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "Jsonnet file `PATH` to write (default: rollbridge.jsonnet next to FILE.js)"},
				&cli.BoolFlag{Name: "force", Usage: "overwrite the output file when it exists"},
				&cli.StringFlag{Name: "compare", Usage: "compare FILE.js with this existing Jsonnet `PATH` instead of writing one"},
			},
			// The synopsis puts the flags after the file, which the
			// flag package stops at; the action parses them itself.
			SkipFlagParsing: true,
			HideHelpCommand: true,
			Action:          runMigrate,
		}},
	}
}

// interspersed parses the command's flags wherever they stand among its
// arguments, and returns a context that reads them.
func interspersed(c *cli.Context) (*cli.Context, bool, error) {
	set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(set); err != nil {
			return nil, false, err
		}
	}
	args, positional := c.Args().Slice(), []string{}
	for {
		if err := set.Parse(args); err != nil {
			return nil, false, usageErrorf(err.Error())
		}
		if set.NArg() == 0 {
			break
		}
		positional = append(positional, set.Arg(0))
		args = set.Args()[1:]
	}
	if err := set.Parse(append([]string{"--"}, positional...)); err != nil {
		return nil, false, usageErrorf(err.Error())
	}
	// Each name of a flag is its own flag.Value (urfave/cli syncs aliases
	// in its own parser): copy a value given by one name to the others.
	visited := map[string]bool{}
	set.Visit(func(f *flag.Flag) { visited[f.Name] = true })
	for _, f := range c.Command.Flags {
		names := f.Names()
		for _, n := range names {
			if !visited[n] {
				continue
			}
			for _, other := range names {
				if other != n {
					if err := set.Set(other, set.Lookup(n).Value.String()); err != nil {
						return nil, false, usageErrorf(err.Error())
					}
				}
			}
			break
		}
	}
	nc := cli.NewContext(c.App, set, c)
	nc.Command = c.Command
	help := set.Lookup("help") // urfave/cli adds -h/--help to every command's Flags
	return nc, help != nil && help.Value.String() == "true", nil
}

func runMigrate(c *cli.Context) error {
	c, help, err := interspersed(c)
	if err != nil {
		return err
	}
	if help {
		return cli.ShowCommandHelp(c.Lineage()[2], c.Command.Name) // [0] is ours, [1] the command's, [2] the parent's
	}
	if c.NArg() != 1 {
		return usageErrorf("config migrate takes one argument, the JavaScript config file (rollbridge.js)")
	}
	src := c.Args().First()
	env := config.EnvMap(os.Environ())
	for _, kv := range c.StringSlice("env") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageErrorf(fmt.Sprintf("--env %q: want NAME=VALUE", kv))
		}
		env[k] = v
	}
	out, compare := c.String("output"), c.String("compare")
	if compare != "" && out != "" {
		return usageErrorf("--compare and --output exclude each other")
	}
	if compare != "" {
		out = compare
	} else if out == "" {
		out = filepath.Join(filepath.Dir(src), config.DefaultFile)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("config migrate: %w", err)
	}
	if compare == "" && !c.Bool("force") {
		if _, err := os.Lstat(out); err == nil {
			return fmt.Errorf("config migrate: %s exists; pass --force to overwrite it, or -o for another file", out)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("config migrate: %w", err)
		}
	}
	res, err := migrate.Migrate(c.Context, migrate.Options{Path: src, Env: env, OutPath: out, Console: c.App.ErrWriter})
	if err != nil {
		return err
	}
	stderr := c.App.ErrWriter
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, "warning:", printable(w.String()))
	}
	if n := len(res.UnplacedComments); n > 0 {
		fmt.Fprintf(stderr, "note: %d %s of %s had no field to stand by and %s left out (%s %s)\n", n, plural(n, "comment", "comments"),
			filepath.Base(src), plural(n, "was", "were"), plural(n, "line", "lines"), joinInts(res.UnplacedComments))
	}
	if len(res.Unused) > 0 {
		fmt.Fprintf(stderr, "note: no field was seen to depend on process.env %s; if the config compares %s with a particular value (=== \"1\"), translate that by hand\n",
			strings.Join(res.Unused, ", "), plural(len(res.Unused), "it", "them"))
	}
	if compare == "" {
		if err := writeFileAtomic(out, res.Jsonnet); err != nil {
			return fmt.Errorf("config migrate: %w", err)
		}
		fmt.Fprintf(c.App.Writer, "wrote %s\n", out)
	}
	failed := len(res.Warnings) > 0

	abs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	fromJS, err := config.Decode(res.Value, abs)
	if err != nil {
		fmt.Fprintf(stderr, "%s does not pass rollbridge-go's checks, so there is nothing to compare against:\n", src)
		return configError(err)
	}
	limits, err := config.LimitsFromEnv(env)
	if err != nil {
		return err
	}
	fromJsonnet, err := config.Loader{Limits: limits}.Load(c.Context, out, env)
	if err != nil {
		fmt.Fprintf(stderr, "%s does not load:\n", out)
		return configError(err)
	}
	diffs, err := migrate.Compare(fromJS, fromJsonnet)
	if err != nil {
		return err
	}
	if len(diffs) > 0 {
		fmt.Fprintf(stderr, "not equivalent: %d %s of the normalised config %s:\n", len(diffs), plural(len(diffs), "field", "fields"), plural(len(diffs), "differs", "differ"))
		for _, d := range diffs {
			fmt.Fprintln(stderr, "  "+printable(d.String()))
		}
		return silentFailure
	}
	vars := "reads no environment variables"
	if len(res.EnvVars) > 0 {
		vars = "reads process.env " + strings.Join(res.EnvVars, ", ")
	}
	fmt.Fprintf(c.App.Writer, "equivalent: %s and %s give the same normalised config (%d %s; %s)\n", src, out,
		len(fromJS.Processes), plural(len(fromJS.Processes), "process", "processes"), printable(vars))
	if failed {
		fmt.Fprintf(stderr, "%d %s: the translation is equivalent under this environment only where the warnings allow; fix %s by hand\n",
			len(res.Warnings), plural(len(res.Warnings), "warning", "warnings"), out)
		return silentFailure
	}
	return nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it into place, so a reader never sees half a config.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename there is nothing left to remove
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
