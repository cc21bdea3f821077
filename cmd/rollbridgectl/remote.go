package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/remote"
	"github.com/urfave/cli/v2"
)

// hostFlags are the app's global flags that send daemon commands to a
// remote host through ssh.
func hostFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "host", Aliases: []string{"H"}, EnvVars: []string{"ROLLBRIDGE_HOST"},
			Usage: "send daemon commands through ssh to the daemon on another host, named `ssh://USER@HOST[:PORT]` (-c and --socket then name paths there)"},
		&cli.StringFlag{Name: "ssh-config", EnvVars: []string{"ROLLBRIDGE_SSH_CONFIG"},
			Usage: "with --host, the ssh config `FILE` to use instead of ~/.ssh/config (ssh -F)"},
		&cli.StringFlag{Name: "remote-ctl", EnvVars: []string{"ROLLBRIDGE_REMOTE_CTL"},
			Usage: "with --host, the rollbridgectl `PATH` on the remote host (default: rollbridgectl on the remote PATH)"},
	}
}

// remoteCommands are the commands that talk to the daemon only, so they
// work on a remote host as they do here. Every other command works on
// this host's files, processes or systemd, and refuses --host.
var remoteCommands = []string{"deploy", "rollback", "status", "stop", "restart", "logs", "events", "shutdown",
	"drain-host", "undrain-host", "completion", "man"}

// refuseHost is the Before of every command that runs on this host only.
func refuseHost(c *cli.Context) error {
	if h := c.String("host"); h != "" {
		name := c.Command.FullName()
		return usageErrorf(fmt.Sprintf("%s works on this host only (its files, processes or systemd), so it does not take --host %s; "+
			"run it on that host: ssh USER@HOST rollbridgectl %s", name, h, name))
	}
	return nil
}

// remoteClient returns a client for the daemon on --host, or nil when no
// --host is given.
func remoteClient(c *cli.Context) (*control.Client, error) {
	h := c.String("host")
	if h == "" {
		return nil, nil
	}
	t, err := remote.Parse(h)
	if err != nil {
		return nil, usageErrorf(err.Error())
	}
	if ctl := c.String("remote-ctl"); ctl != "" && ctl[0] == '-' {
		return nil, usageErrorf("--remote-ctl must be a path or a command name, not start with '-'")
	}
	d := &remote.Dialer{Target: t, SSHConfig: c.String("ssh-config"), RemoteCtl: c.String("remote-ctl"),
		Config: c.String("config"), Socket: c.String("socket")}
	return &control.Client{Path: t.String(), Dial: d.Dial}, nil
}

func dialStdioCommand() *cli.Command {
	return &cli.Command{
		Name:      "dial-stdio",
		Usage:     "relay stdin and stdout to the daemon's control socket (what --host runs through ssh)",
		UsageText: "rollbridgectl dial-stdio [-c PATH | --socket PATH]",
		Description: "Connects to the control socket (--socket, else the config's control.path, with the\n" +
			"same owner check as every command) and copies stdin to it and its answers to stdout,\n" +
			"until either side ends. `rollbridgectl --host ssh://USER@HOST CMD` runs it on that\n" +
			"host through ssh. Exits 3 when no daemon answers.",
		Flags: daemonFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, ""); err != nil {
				return err
			}
			if c.String("host") != "" {
				return usageErrorf("dial-stdio is what --host runs on the remote host; it takes no --host itself")
			}
			cl, err := daemonClient(c)
			if err != nil {
				return err
			}
			conn, err := cl.Connect(c.Context)
			if err != nil {
				return daemonError("dial-stdio", err)
			}
			return relay(c.Context, conn, os.Stdin, c.App.Writer)
		},
	}
}

// relay copies in to conn and conn to out until conn ends (the daemon
// answered and closed, or went away) or in ends and conn has said all.
func relay(ctx context.Context, conn io.ReadWriteCloser, in io.Reader, out io.Writer) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	go func() {
		_, _ = io.Copy(conn, in) // ends with stdin, or with conn closed below
		if uc, ok := conn.(*net.UnixConn); ok {
			_ = uc.CloseWrite() // the daemon answers what it read, then sees EOF
		}
	}()
	_, err := io.Copy(out, conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
		return fmt.Errorf("dial-stdio: %w", err)
	}
	return nil
}

// isRemoteCommand reports whether name works with --host.
func isRemoteCommand(name string) bool { return slices.Contains(remoteCommands, name) }
