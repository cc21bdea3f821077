package systemd

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
)

// cgroupFS finds a unit's cgroup on this host's cgroup layout: the unified
// (v2) hierarchy at /sys/fs/cgroup, or, on a hybrid host, at
// /sys/fs/cgroup/unified beside the v1 controllers (memory at
// /sys/fs/cgroup/memory).
type cgroupFS struct {
	procsRoot string // where unit cgroups list their cgroup.procs
	memRoot   string // where their memory figure is
	v1Memory  bool   // memory.usage_in_bytes instead of memory.current
}

func detectCgroupFS() cgroupFS {
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	switch {
	case exists("/sys/fs/cgroup/cgroup.procs") && exists("/sys/fs/cgroup/cgroup.controllers"):
		return cgroupFS{procsRoot: "/sys/fs/cgroup", memRoot: "/sys/fs/cgroup"}
	case exists("/sys/fs/cgroup/unified/cgroup.procs"):
		c := cgroupFS{procsRoot: "/sys/fs/cgroup/unified"}
		if exists("/sys/fs/cgroup/memory/memory.usage_in_bytes") {
			c.memRoot, c.v1Memory = "/sys/fs/cgroup/memory", true
		}
		return c
	case exists("/sys/fs/cgroup/systemd/cgroup.procs"):
		c := cgroupFS{procsRoot: "/sys/fs/cgroup/systemd"}
		if exists("/sys/fs/cgroup/memory/memory.usage_in_bytes") {
			c.memRoot, c.v1Memory = "/sys/fs/cgroup/memory", true
		}
		return c
	}
	return cgroupFS{procsRoot: "/sys/fs/cgroup", memRoot: "/sys/fs/cgroup"}
}

// procs lists the pids in cgroup cg and in every cgroup below it. A cgroup
// that does not exist (the unit is gone) has none.
func (c cgroupFS) procs(cg string) []int {
	if cg == "" {
		return nil
	}
	var out []int
	root := filepath.Join(c.procsRoot, filepath.Clean("/"+cg))
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil // vanished while we walked: nothing in it
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range bytes.Fields(b) {
			if pid, err := strconv.Atoi(string(f)); err == nil {
				out = append(out, pid)
			}
		}
		return nil
	})
	return out
}

// memory is the cgroup's own memory figure: memory.current on cgroup v2,
// memory.usage_in_bytes on a v1 memory controller. ok is false where the
// host accounts no memory for it.
func (c cgroupFS) memory(cg string) (uint64, bool) {
	if cg == "" || c.memRoot == "" {
		return 0, false
	}
	file := "memory.current"
	if c.v1Memory {
		file = "memory.usage_in_bytes"
	}
	b, err := os.ReadFile(filepath.Join(c.memRoot, filepath.Clean("/"+cg), file))
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// unitCgroup is the cgroup systemd gives unit name in slice (its
// ControlGroup property), derived the way systemd derives it: a slice
// "a-b.slice" nests inside "a.slice", and the unit's cgroup is inside its
// slice's. The names here never need systemd's cgroup escaping (that is
// for names that start with "_" or "." or with a controller's name and a
// dot; ours start with "rollbridge-"). It assumes the manager's own root
// is the hierarchy's root, which Runner checks once against systemd (see
// Runner.derivedOK).
func unitCgroup(slice, name string) string {
	base := strings.TrimSuffix(slice, ".slice")
	var b strings.Builder
	for i := 0; i < len(base); i++ {
		if base[i] == '-' {
			b.WriteString("/" + base[:i] + ".slice")
		}
	}
	b.WriteString("/" + slice + "/" + name)
	return b.String()
}

// invocationID is the invocation id systemd wrote on the unified
// hierarchy's cgroup cg (the xattrs user.invocation_id and, readable by
// root only, trusted.invocation_id) when it set up the unit's run: the
// same value as the unit's InvocationID property, without asking systemd.
// ok is false where there is none (no unified hierarchy, an older systemd).
func (c cgroupFS) invocationID(cg string) (string, bool) {
	if cg == "" {
		return "", false
	}
	p := filepath.Join(c.procsRoot, filepath.Clean("/"+cg))
	buf := make([]byte, 64)
	for _, attr := range []string{"user.invocation_id", "trusted.invocation_id"} {
		if n, err := unix.Getxattr(p, attr, buf); err == nil && n == 32 {
			return string(buf[:n]), true
		}
	}
	return "", false
}

// mainFromCgroup is the main pid of a run whose start job has just ended,
// read from its cgroup cg: systemd forks the main process into it before
// the job ends, so right after that it is the process there whose parent
// is the manager (pid 1), and the only one unless it has forked already
// (then 0: ask systemd). A child of a main process that has already
// exited looks the same; Runner.attach has systemd confirm the pid off the
// start path for that reason.
func (c cgroupFS) mainFromCgroup(cg string) int {
	b, err := os.ReadFile(filepath.Join(c.procsRoot, filepath.Clean("/"+cg), "cgroup.procs"))
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) != 1 {
		return 0
	}
	pid, err := strconv.Atoi(string(f[0]))
	if err != nil {
		return 0
	}
	st, err := procfs.ReadStat(pid)
	if err != nil || st.Ppid != 1 {
		return 0
	}
	return pid
}
