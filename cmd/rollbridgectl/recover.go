package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/state"
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

type recoverResult struct {
	StatePath        string         `json:"statePath"`
	Orphans          []state.Orphan `json:"orphans"`
	Stopped          []state.Orphan `json:"stopped"`
	StillRunning     []state.Orphan `json:"stillRunning"`
	StateFileRemoved bool           `json:"stateFileRemoved"`
	DryRun           bool           `json:"dryRun"`
}

func runRecover(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return configError(err)
	}
	res, err := recoverOrphans(cfg, c.Bool("force"), stopGroup)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(res) // plain data: cannot fail
	if err := printJSON(c, b); err != nil {
		return err
	}
	if len(res.StillRunning) > 0 {
		return fmt.Errorf("%d orphaned processes could not be stopped (kept %s so you can investigate and re-run recover)", len(res.StillRunning), res.StatePath)
	}
	return nil
}

// daemonHoldsSocket reports whether anything listens on the control socket.
func daemonHoldsSocket(path string) bool {
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	_ = conn.Close() // only probing
	return true
}

// stopFunc ends one orphan and reports whether it is gone.
type stopFunc func(pid int, start uint64, grace time.Duration) bool

// recoverOrphans lists the leftovers of a crashed daemon and, with force,
// stops them (with stop) and removes the state file.
func recoverOrphans(cfg *config.Config, force bool, stop stopFunc) (*recoverResult, error) {
	if cfg.StatePath == "" {
		return nil, errors.New("recover needs statePath in the config: without it the daemon records nothing to recover")
	}
	if daemonHoldsSocket(cfg.Control.Path) {
		return nil, fmt.Errorf("a daemon (or another program) holds the control socket %s; its processes are not orphans. recover is for after a crash: check rollbridgectl status", cfg.Control.Path)
	}
	res := &recoverResult{StatePath: cfg.StatePath, Orphans: []state.Orphan{}, Stopped: []state.Orphan{}, StillRunning: []state.Orphan{}, DryRun: !force}
	snap, err := state.Load(cfg.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	starts := map[int]uint64{}
	for _, p := range snap.Processes {
		starts[p.Pid] = p.StartTime
	}
	res.Orphans = snap.Orphans()
	if !force {
		return res, nil
	}
	grace := config.Ms(cfg.Proxy.ForceStopTimeoutMs)
	for _, o := range res.Orphans {
		if stop(o.Pid, starts[o.Pid], grace) {
			res.Stopped = append(res.Stopped, o)
		} else {
			res.StillRunning = append(res.StillRunning, o)
		}
	}
	if len(res.StillRunning) == 0 {
		if err := state.Remove(cfg.StatePath); err != nil {
			return nil, err
		}
		res.StateFileRemoved = true
	}
	return res, nil
}

// stopGroup sends SIGTERM to pid's process group (rollbridge starts every
// process as a group leader), SIGKILL after grace, and reports whether the
// recorded process is gone.
func stopGroup(pid int, start uint64, grace time.Duration) bool {
	signal := func(sig syscall.Signal) {
		if err := syscall.Kill(-pid, sig); err != nil {
			_ = syscall.Kill(pid, sig) // not a group leader after all
		}
	}
	signal(syscall.SIGTERM)
	if waitDead(pid, start, grace) {
		return true
	}
	signal(syscall.SIGKILL)
	return waitDead(pid, start, 5*time.Second)
}

func waitDead(pid int, start uint64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for state.Alive(pid, start) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
