package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuQuota is a cgroup with a CPU quota (cgroup v2's cpu.max or v1's CFS
// quota), into which the lean section moves the proxy under test for its
// half-CPU runs. Only the proxy's own process group goes in: a daemon's
// apps lead groups of their own and stay on the load CPU, unlimited.
type cpuQuota struct {
	root string // the controller's mount
	dir  string // the cgroup made for the quota
	v2   bool
}

// cpuQuotaPeriodUs is the quota's period. Short, so that a proxy over its
// quota waits at most a few milliseconds, not the default 100.
const cpuQuotaPeriodUs = 10000

// newCPUQuota makes a cgroup (named after this process, removed by
// remove) that lets its processes use share of one CPU, or says why it
// cannot (no cgroup CPU controller, or not allowed to make one).
func newCPUQuota(name string, share float64) (*cpuQuota, error) {
	quota := int(share * cpuQuotaPeriodUs)
	dirName := "rbbench-" + strconv.Itoa(os.Getpid()) + "-" + filepath.Base(name)
	if c, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		if !strings.Contains(" "+strings.TrimSpace(string(c))+" ", " cpu ") {
			return nil, errors.New("cgroup v2 without the cpu controller")
		}
		_ = os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpu"), 0o644)
		q := &cpuQuota{root: "/sys/fs/cgroup", dir: filepath.Join("/sys/fs/cgroup", dirName), v2: true}
		if err := os.Mkdir(q.dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v2: %w", err)
		}
		if err := os.WriteFile(filepath.Join(q.dir, "cpu.max"), []byte(fmt.Sprintf("%d %d", quota, cpuQuotaPeriodUs)), 0o644); err != nil {
			q.remove()
			return nil, fmt.Errorf("cgroup v2 cpu.max: %w", err)
		}
		return q, nil
	}
	for _, root := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"} {
		if _, err := os.Stat(filepath.Join(root, "cpu.cfs_quota_us")); err != nil {
			continue
		}
		q := &cpuQuota{root: root, dir: filepath.Join(root, dirName)}
		if err := os.Mkdir(q.dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v1 cpu: %w", err)
		}
		for _, f := range []struct {
			file string
			v    int
		}{{"cpu.cfs_period_us", cpuQuotaPeriodUs}, {"cpu.cfs_quota_us", quota}} {
			if err := os.WriteFile(filepath.Join(q.dir, f.file), []byte(strconv.Itoa(f.v)), 0o644); err != nil {
				q.remove()
				return nil, fmt.Errorf("cgroup v1 %s: %w", f.file, err)
			}
		}
		return q, nil
	}
	return nil, errors.New("no cgroup CPU controller (neither v2's cpu.max nor v1's cpu.cfs_quota_us)")
}

// hold moves every process of process group pgid into the quota and
// returns what moves each back to the cgroup it came from.
func (q *cpuQuota) hold(pgid int) (undo func(), err error) {
	type moved struct {
		pid  int
		from string
	}
	var back []moved
	undo = func() {
		for _, m := range back {
			_ = os.WriteFile(filepath.Join(m.from, "cgroup.procs"), []byte(strconv.Itoa(m.pid)), 0o644)
		}
	}
	pids := groupPids(pgid)
	if len(pids) == 0 {
		return nil, fmt.Errorf("process group %d: no process", pgid)
	}
	for _, pid := range pids {
		from, err := q.cgroupOf(pid)
		if err != nil {
			undo()
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(q.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			undo()
			return nil, fmt.Errorf("move %d into %s: %w", pid, q.dir, err)
		}
		back = append(back, moved{pid, from})
	}
	return undo, nil
}

// cgroupOf is the directory of pid's cgroup in q's hierarchy.
func (q *cpuQuota) cgroupOf(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		// hierarchy-ID:controllers:path ("0::/x" on v2, "3:cpu,cpuacct:/x" on v1)
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if q.v2 && f[0] == "0" && f[1] == "" {
			return filepath.Join(q.root, f[2]), nil
		}
		for _, c := range strings.Split(f[1], ",") {
			if !q.v2 && c == "cpu" {
				return filepath.Join(q.root, f[2]), nil
			}
		}
	}
	return "", fmt.Errorf("process %d: no cgroup in %s", pid, q.root)
}

// remove deletes the cgroup (empty once every hold is undone).
func (q *cpuQuota) remove() { _ = os.Remove(q.dir) }
