package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/rollbridge/rollbridge-go/bench/load"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// FootprintReport is the daemon's own cost.
type FootprintReport struct {
	RSSIdleKiB       int64     `json:"rssIdleKiB"`
	RSSOneReleaseKiB int64     `json:"rssOneReleaseKiB"`
	RSSUnderLoadKiB  int64     `json:"rssUnderLoadKiB"`
	CPUPer10kMs      float64   `json:"cpuMsPer10kRequests"`
	LoadRPS          float64   `json:"loadRps"`
	StatusMs         []float64 `json:"statusMs"`    // control-socket round trip, 10 releases x 10 processes
	StatusCLIMs      []float64 `json:"statusCliMs"` // the same through the rollbridgectl binary
	StatusBytes      int       `json:"statusBytes"`
}

func footprint(ctx context.Context, e *env) (*FootprintReport, error) {
	rep := &FootprintReport{}
	// Idle: a fresh daemon with nothing deployed.
	idle, _, err := e.startDaemon("idle", "{}", "[]", 10)
	if err != nil {
		return rep, err
	}
	time.Sleep(time.Second)
	rep.RSSIdleKiB = rssKiB(idle.cmd.Process.Pid)
	if _, err := idle.deploy(ctx, nil); err != nil {
		return rep, err
	}
	time.Sleep(time.Second)
	rep.RSSOneReleaseKiB = rssKiB(idle.cmd.Process.Pid)

	// Under load: the main daemon at c64 keep-alive, sampling RSS.
	pid := e.rb.cmd.Process.Pid
	cpu0 := cpuTime(pid)
	done := make(chan load.Result, 1)
	go func() {
		done <- load.Run(ctx, load.Config{URL: e.rbURL + "/bytes?n=100", Concurrency: 64, Duration: 5 * time.Second, KeepAlive: true})
	}()
	var r load.Result
	for r.Requests == 0 {
		select {
		case r = <-done:
		case <-time.After(200 * time.Millisecond):
			rep.RSSUnderLoadKiB = max(rep.RSSUnderLoadKiB, rssKiB(pid))
		}
	}
	cpu := cpuTime(pid) - cpu0
	rep.LoadRPS = r.RPS
	rep.CPUPer10kMs = float64(cpu.Microseconds()) / float64(r.Requests) * 10000 / 1000

	// Status with 10 retained releases of 10 processes each.
	extra := "[{id: 'w' + i, command: 'exec sleep 100000'} for i in ['1','2','3','4','5','6','7','8','9']]"
	big, _, err := e.startDaemon("big", "{}", extra, 10)
	if err != nil {
		return rep, err
	}
	for i := 0; i < 11; i++ {
		if _, err := big.deploy(ctx, nil); err != nil {
			return rep, fmt.Errorf("deploy %d of the status fixture: %w", i+1, err)
		}
	}
	for i := 0; i < 50; i++ {
		t0 := time.Now()
		raw, err := big.client.Do(ctx, &control.Request{Command: control.CmdStatus}, nil)
		if err != nil {
			return rep, err
		}
		rep.StatusMs = append(rep.StatusMs, float64(time.Since(t0).Microseconds())/1000)
		rep.StatusBytes = len(raw)
	}
	ctl, _ := filepath.Abs(filepath.Join(e.o.bin, "rollbridgectl"))
	for i := 0; i < 10; i++ {
		t0 := time.Now()
		if out, err := exec.Command(ctl, "status", "-c", big.cfg).CombinedOutput(); err != nil {
			return rep, fmt.Errorf("rollbridgectl status: %v: %s", err, out)
		}
		rep.StatusCLIMs = append(rep.StatusCLIMs, float64(time.Since(t0).Microseconds())/1000)
	}
	sort.Float64s(rep.StatusMs)
	sort.Float64s(rep.StatusCLIMs)
	return rep, nil
}
