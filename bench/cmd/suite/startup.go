package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// StartupReport is the startup section, each in milliseconds, one value
// per run: how long a fresh daemon takes until its control socket answers,
// and how long `rollbridgectl status` takes as a user runs it.
type StartupReport struct {
	// StartToControlMs: from starting rollbridged (a fresh daemon, no
	// state, the bench config; the config is evaluated in a child process)
	// to its first successful status on the control socket, polled every
	// millisecond.
	StartToControlMs []float64 `json:"startToControlMs"`
	// CLIStatusMs: `rollbridgectl status -c CONFIG` from exec to exit
	// against a daemon with one release (the CLI evaluates the config to
	// find the socket); CLISocketMs: `rollbridgectl status --socket PATH`,
	// no config; SocketMs: the same status asked in-process over the
	// control socket, for comparison.
	CLIStatusMs []float64 `json:"cliStatusMs"`
	CLISocketMs []float64 `json:"cliStatusSocketMs"`
	SocketMs    []float64 `json:"socketStatusMs"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// startup starts e.o.starts fresh daemons one after the other (each is shut
// down before the next), then runs the status commands as many times each,
// interleaved, against one daemon with one release.
func startup(ctx context.Context, e *env) (*StartupReport, error) {
	rep := &StartupReport{}
	for i := 0; i < e.o.starts; i++ {
		d, _, err := e.startDaemon(fmt.Sprintf("start%d", i), "{}", "[]", 2)
		if err != nil {
			return rep, err
		}
		rep.StartToControlMs = append(rep.StartToControlMs, ms(d.answeredAt.Sub(d.startedAt)))
		if _, err := d.client.Shutdown(ctx); err != nil {
			return rep, fmt.Errorf("shutdown after start %d: %w", i+1, err)
		}
		_ = d.cmd.Wait() // one daemon at a time; the cleanup's second Wait returns at once
	}
	d, _, err := e.startDaemon("status1", "{}", "[]", 2)
	if err != nil {
		return rep, err
	}
	if _, err := d.deploy(ctx, nil); err != nil {
		return rep, err
	}
	ctl, _ := filepath.Abs(filepath.Join(e.o.bin, "rollbridgectl"))
	cli := func(args ...string) (float64, error) {
		t0 := time.Now()
		out, err := exec.Command(ctl, args...).CombinedOutput()
		took := ms(time.Since(t0))
		if err != nil || !strings.Contains(string(out), `"activeReleaseId"`) {
			return 0, fmt.Errorf("rollbridgectl %s: %v: %.200s", strings.Join(args, " "), err, out)
		}
		return took, nil
	}
	for i := 0; i < e.o.starts; i++ {
		v, err := cli("status", "-c", d.cfg)
		if err != nil {
			return rep, err
		}
		rep.CLIStatusMs = append(rep.CLIStatusMs, v)
		if v, err = cli("status", "--socket", d.client.Path); err != nil {
			return rep, err
		}
		rep.CLISocketMs = append(rep.CLISocketMs, v)
		t0 := time.Now()
		if _, err := d.client.Do(ctx, &control.Request{Command: control.CmdStatus}, nil); err != nil {
			return rep, err
		}
		rep.SocketMs = append(rep.SocketMs, ms(time.Since(t0)))
	}
	fmt.Fprintln(os.Stderr, "bench: startup done")
	return rep, nil
}

func (s *StartupReport) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Start and status (ms, median [min–max] of %d runs)\n\n| measure | ms |\n|---|---|\n", len(s.StartToControlMs))
	row := func(name string, v []float64) {
		lo, m, hi := stats(v)
		fmt.Fprintf(&b, "| %s | %.1f [%.1f–%.1f] |\n", name, m, lo, hi)
	}
	row("daemon start → control socket answers status (fresh daemon, config evaluated)", s.StartToControlMs)
	row("`rollbridgectl status -c CONFIG`, exec → exit (1 release; the CLI evaluates the config)", s.CLIStatusMs)
	row("`rollbridgectl status --socket PATH`, exec → exit (no config)", s.CLISocketMs)
	row("status over the control socket, in-process client", s.SocketMs)
	return b.String()
}
