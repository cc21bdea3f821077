package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// IdleReport is what supervision costs while nothing happens: the daemon's
// CPU with no traffic, for several numbers of managed processes (each with a
// memory limit checked every second) and of other processes on the host.
type IdleReport struct {
	WindowS float64    `json:"windowS"`
	Cells   []IdleCell `json:"cells"` // one per measurement, repeats included
}

// IdleCell is one measurement.
type IdleCell struct {
	Managed       int     `json:"managed"`
	HostExtra     int     `json:"hostExtra"`
	CPUPercent    float64 `json:"cpuPercentOfOneCore"`
	ManagedFound  int     `json:"managedRunning"`
	HostProcesses int     `json:"hostProcesses"` // pids on the host during the window
}

// cpu returns the measurements of one cell.
func (r *IdleReport) cpu(managed, extra int) []float64 {
	var v []float64
	for _, c := range r.Cells {
		if c.Managed == managed && c.HostExtra == extra {
			v = append(v, c.CPUPercent)
		}
	}
	return v
}

var (
	idleManaged = []int{1, 20, 100}
	idleExtra   = []int{0, 2000}
)

// idleCost measures every cell -repeat times. Each repeat goes through
// both columns, so the 0 and 2,000 columns come from the same run and
// machine noise hits them alike.
func idleCost(ctx context.Context, e *env) (*IdleReport, error) {
	window := 10 * time.Second
	if e.o.quick {
		window = 2 * time.Second
	}
	rep := &IdleReport{WindowS: window.Seconds()}
	for i := 0; i < e.o.repeat; i++ {
		for _, extra := range idleExtra {
			stopHost, err := hostProcesses(extra)
			if err != nil {
				return rep, err
			}
			for _, n := range idleManaged {
				cell, err := idleCell(ctx, e, n, extra, window, i)
				if err != nil {
					stopHost()
					return rep, err
				}
				rep.Cells = append(rep.Cells, cell)
				fmt.Fprintf(os.Stderr, "bench: idle cost, %d managed, %d extra host processes: %.2f %% of a core\n", n, extra, cell.CPUPercent)
			}
			stopHost()
		}
	}
	return rep, nil
}

func idleCell(ctx context.Context, e *env, managed, extra int, window time.Duration, repeat int) (IdleCell, error) {
	cell := IdleCell{Managed: managed, HostExtra: extra}
	mem := `{memory: {limitBytes: 8 * 1024 * 1024 * 1024, checkIntervalMs: 1000}}`
	workers := "[]"
	if managed > 1 {
		workers = fmt.Sprintf(`[{id: 'worker', command: 'exec sleep 1000000', replicas: %d} + %s]`, managed-1, mem)
	}
	d, _, err := e.startDaemon(fmt.Sprintf("idle-%d-%d-%d", managed, extra, repeat), mem, workers, 1)
	if err != nil {
		return cell, err
	}
	defer func() {
		// Stopped before the next cell, so one cell's daemon never loads another's window.
		_, _ = d.client.Shutdown(ctx)
	}()
	if _, err := d.deploy(ctx, nil); err != nil {
		return cell, fmt.Errorf("idle cell deploy: %w", err)
	}
	st, err := d.client.Status(ctx)
	if err != nil {
		return cell, err
	}
	for _, r := range st.Releases {
		for _, p := range r.Processes {
			if p.State == "running" {
				cell.ManagedFound++
			}
		}
	}
	time.Sleep(3 * time.Second) // past start-up and the first memory samples
	pid := d.cmd.Process.Pid
	c0, t0 := threadsCPU(pid), time.Now()
	time.Sleep(window)
	c1, t1 := threadsCPU(pid), time.Now()
	cell.HostProcesses = countPids()
	cell.CPUPercent = 100 * float64(c1-c0) / float64(t1.Sub(t0))
	return cell, nil
}

// hostProcesses starts n sleeping processes that have nothing to do with
// any daemon, like the other programs of a busy server, and returns what
// stops them.
func hostProcesses(n int) (stop func(), err error) {
	if n == 0 {
		return func() {}, nil
	}
	cmd := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt "+strconv.Itoa(n)+" ]; do sleep 100000 & i=$((i+1)); done; echo started; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %d host processes: %w", n, err)
	}
	stop = func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait() // killed on purpose
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "started" {
		stop()
		return nil, fmt.Errorf("start %d host processes: %q %v", n, line, err)
	}
	return stop, nil
}

// threadsCPU is the time every thread of pid has run, from the scheduler's
// nanosecond counters (/proc/PID/task/*/schedstat), precise enough for the
// small numbers of an idle daemon.
func threadsCPU(pid int) time.Duration {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	ents, _ := os.ReadDir(dir)
	var ns int64
	for _, t := range ents {
		b, err := os.ReadFile(dir + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			ns += v
		}
	}
	return time.Duration(ns)
}

func countPids() int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}
