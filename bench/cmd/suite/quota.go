package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// cpuQuota is a cgroup with a CPU quota (cgroup v2's cpu.max or v1's CFS
// quota), into which the lean section moves the proxy under test for its
// half-CPU runs. Only the proxy's own process group goes in: a daemon's
// apps lead groups of their own and stay on the load CPU, unlimited. The
// cgroup is made at the top of the CPU hierarchy, so on cgroup v2 a held
// proxy also leaves the memory and pids limits of the cgroup it came from
// for the run (on a benchmark host, none).
type cpuQuota struct {
	root string // the controller's mount
	dir  string // the cgroup made for the quota
	v2   bool
	from map[int]string // where each process held came from
}

// cpuQuotaPeriodUs is the quota's period. Short, so that a proxy over its
// quota waits at most a few milliseconds, not the default 100.
const cpuQuotaPeriodUs = 10000

// quotaPrefix starts the name of every cgroup the suite makes, followed by
// the suite's pid: a later run removes those whose suite is gone.
const quotaPrefix = "rbbench-"

// newCPUQuota makes a cgroup (removed by remove) that lets its processes
// use share of one CPU, or says why it cannot (no cgroup CPU controller,
// not enabled at the top of cgroup v2, or not allowed to make one). It
// changes nothing else of the host's cgroup setup.
func newCPUQuota(name string, share float64) (*cpuQuota, error) {
	quota := int(share * cpuQuotaPeriodUs)
	dirName := quotaPrefix + strconv.Itoa(os.Getpid()) + "-" + filepath.Base(name)
	if c, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control"); err == nil {
		if !hasWord(string(c), "cpu") {
			return nil, errors.New("cgroup v2 without the cpu controller enabled for the top-level cgroups (/sys/fs/cgroup/cgroup.subtree_control)")
		}
		q := &cpuQuota{root: "/sys/fs/cgroup", dir: filepath.Join("/sys/fs/cgroup", dirName), v2: true, from: map[int]string{}}
		q.removeStale()
		if err := os.Mkdir(q.dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v2: %w", err)
		}
		if err := os.WriteFile(filepath.Join(q.dir, "cpu.max"), []byte(fmt.Sprintf("%d %d", quota, cpuQuotaPeriodUs)), 0o644); err != nil {
			_ = q.remove()
			return nil, fmt.Errorf("cgroup v2 cpu.max: %w", err)
		}
		return q, nil
	}
	for _, root := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"} {
		if _, err := os.Stat(filepath.Join(root, "cpu.cfs_quota_us")); err != nil {
			continue
		}
		q := &cpuQuota{root: root, dir: filepath.Join(root, dirName), from: map[int]string{}}
		q.removeStale()
		if err := os.Mkdir(q.dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v1 cpu: %w", err)
		}
		for _, f := range []struct {
			file string
			v    int
		}{{"cpu.cfs_period_us", cpuQuotaPeriodUs}, {"cpu.cfs_quota_us", quota}} {
			if err := os.WriteFile(filepath.Join(q.dir, f.file), []byte(strconv.Itoa(f.v)), 0o644); err != nil {
				_ = q.remove()
				return nil, fmt.Errorf("cgroup v1 %s: %w", f.file, err)
			}
		}
		return q, nil
	}
	return nil, errors.New("no cgroup CPU controller (neither v2's cpu.max nor v1's cpu.cfs_quota_us)")
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// hold moves every process of process group pgid into the quota and
// returns what lets go of them (release).
func (q *cpuQuota) hold(pgid int) (release func() error, err error) {
	pids := groupPids(pgid)
	if len(pids) == 0 {
		return nil, fmt.Errorf("process group %d: no process", pgid)
	}
	for _, pid := range pids {
		from, err := q.cgroupOf(pid)
		if err == nil {
			if _, err = os.Stat(from); err != nil { // another cgroup namespace's path
				err = fmt.Errorf("process %d's cgroup %s is not in this mount: %w", pid, from, err)
			}
		}
		if err == nil {
			q.from[pid] = from
			if err = os.WriteFile(filepath.Join(q.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
				err = fmt.Errorf("move %d into %s: %w", pid, q.dir, err)
			}
		}
		if err != nil {
			return nil, errors.Join(err, q.release())
		}
	}
	return q.release, nil
}

// release moves every process in the quota's cgroup (whatever the held
// processes forked meanwhile too) back to where it came from, or where
// its parent came from, or to the top of the hierarchy.
func (q *cpuQuota) release() error {
	return releaseAll(q.dir, q.root, func(pid int) string {
		if from, ok := q.from[pid]; ok {
			return from
		}
		if from, ok := q.from[parentPid(pid)]; ok {
			return from
		}
		return q.root
	})
}

// releaseAll empties cgroup dir, moving each of its processes to where(pid).
func releaseAll(dir, root string, where func(pid int) string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		err = os.WriteFile(filepath.Join(where(pid), "cgroup.procs"), []byte(f), 0o644)
		if err != nil && where(pid) != root {
			err = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(f), 0o644)
		}
		if err != nil && !errors.Is(err, syscall.ESRCH) { // ESRCH: it has exited
			errs = append(errs, fmt.Errorf("move %d out of %s: %w", pid, dir, err))
		}
	}
	return errors.Join(errs...)
}

func parentPid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
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

// remove lets go of every process still held and deletes the cgroup.
func (q *cpuQuota) remove() error {
	err := q.release()
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err2 := os.Remove(q.dir); err2 != nil && !errors.Is(err2, os.ErrNotExist) {
		err = errors.Join(err, err2)
	}
	return err
}

// removeStale deletes the quota cgroups of suites no longer running (one
// interrupted by SIGKILL, say), moving anything left in them to the top.
func (q *cpuQuota) removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(q.root, quotaPrefix+"*"))
	for _, d := range dirs {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), quotaPrefix), "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its suite still runs
		}
		_ = releaseAll(d, q.root, func(int) string { return q.root })
		_ = os.Remove(d)
	}
}
