package state

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
)

// The Node original (rollbridge 0.1.x on npm) keeps its own state file at
// statePath: its status snapshot (releases with their processes, services,
// singletons; since 0.1.13 also orphans) plus its events and persistedAt,
// and no version key. Hosts that switch from it to rollbridged have such a
// file, and processes it lists may still run. Read understands both
// formats, so recover, doctor, predeploy-cleanup and the daemon find those
// processes; nothing ever writes the Node format.

// NodeOrigin describes a state file the Node original wrote.
type NodeOrigin struct {
	// ControlPath is the Node daemon's control socket (control.path), where
	// a Node daemon that still runs answers.
	ControlPath string
	// PersistedAt is when the Node daemon last wrote the file.
	PersistedAt time.Time
}

// startSlack is how far a process's start time, as the kernel tells it,
// may lie from the Node file's startedAt (taken by the Node daemon right
// after the spawn) for the two to count as the same process. The kernel's
// boot time has whole seconds, and the wall clock may have been stepped
// since boot; a recycled pid started at another moment is not taken.
const startSlack = 5 * time.Second

// Read reads the state file at path in rollbridged's format (as Load) or
// in the Node original's. A Node file comes back as a Snapshot with Node
// set, Application and ActiveReleaseID, the releases, and as Processes
// only the recorded processes that still run: those with a startedAt must
// have started then (within a few seconds), the others are taken by pid
// alone, as the original does. Their StartTime is the one read now, so
// that whatever stops them never signals a pid that changed hands since.
//
// Errors: as Load; a file that is neither format is a *CorruptError.
func Read(path string) (*Snapshot, error) {
	b, owner, trusted, err := readOwned(path)
	if err != nil {
		return nil, err
	}
	if snap, ok, err := parseNode(b); ok {
		if err != nil {
			return nil, &CorruptError{Path: path, Err: err}
		}
		return snap, nil
	}
	s, err := parse(path, b)
	if err != nil {
		return nil, err
	}
	s.owner, s.ownerKnown = owner, trusted
	return s, nil
}

type nodeFile struct {
	Version         json.RawMessage `json:"version"`
	ActiveReleaseID *string         `json:"activeReleaseId"`
	Application     string          `json:"application"`
	Control         struct {
		Path string `json:"path"`
	} `json:"control"`
	Orphans []struct {
		ID        string  `json:"id"`
		Pid       float64 `json:"pid"`
		ReleaseID *string `json:"releaseId"`
	} `json:"orphans"`
	Releases []struct {
		ReleaseID   string        `json:"releaseId"`
		ReleasePath string        `json:"releasePath"`
		Revision    string        `json:"revision"`
		State       string        `json:"state"`
		ActivatedAt string        `json:"activatedAt"`
		Processes   []nodeProcess `json:"processes"`
	} `json:"releases"`
	Services    []nodeUnit `json:"services"`
	Singletons  []nodeUnit `json:"singletons"`
	PersistedAt string     `json:"persistedAt"`
}

type nodeUnit struct {
	ID      string      `json:"id"`
	Process nodeProcess `json:"process"`
}

type nodeProcess struct {
	ID        string   `json:"id"`
	Pid       *float64 `json:"pid"`
	StartedAt string   `json:"startedAt"`
}

// parseNode decodes b if it is a Node state file: a JSON object without
// "version" that has the arrays releases, services and singletons. ok is
// false for anything else (then b is left to Load).
func parseNode(b []byte) (snap *Snapshot, ok bool, err error) {
	var probe map[string]json.RawMessage
	if json.Unmarshal(b, &probe) != nil {
		return nil, false, nil
	}
	if _, has := probe["version"]; has {
		return nil, false, nil
	}
	for _, k := range []string{"releases", "services", "singletons"} {
		if v, has := probe[k]; !has || !bytes.HasPrefix(bytes.TrimSpace(v), []byte("[")) {
			return nil, false, nil
		}
	}
	var f nodeFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, true, fmt.Errorf("a Node rollbridge state file with an unexpected shape: %w", err)
	}
	snap = &Snapshot{Application: f.Application, Node: &NodeOrigin{ControlPath: f.Control.Path, PersistedAt: parseTime(f.PersistedAt)}}
	if f.ActiveReleaseID != nil {
		snap.ActiveReleaseID = *f.ActiveReleaseID
	}
	boot := bootTime()
	seen := map[int]bool{}
	add := func(id, base, releaseID, policy string, pid *float64, startedAt string) {
		if pid == nil || *pid != math.Trunc(*pid) || *pid <= 0 || *pid > math.MaxInt32 {
			return
		}
		p := int(*pid)
		if seen[p] {
			return
		}
		st, ok := nodeProcessStart(p, parseTime(startedAt), boot)
		if !ok {
			return
		}
		seen[p] = true
		snap.Processes = append(snap.Processes, ProcessRecord{ID: id, ProcessID: base, ReleaseID: releaseID, Policy: policy, Pid: p, StartTime: st})
	}
	for _, o := range f.Orphans { // HEAD: what an earlier daemon left, kept by the last one
		rel := ""
		if o.ReleaseID != nil {
			rel = *o.ReleaseID
		}
		pid := o.Pid
		add(o.ID, baseID(o.ID), rel, "", &pid, "")
	}
	for _, r := range f.Releases {
		snap.Releases = append(snap.Releases, ReleaseRecord{ID: r.ReleaseID, Path: r.ReleasePath, Revision: r.Revision, State: r.State, ActivatedAt: parseTime(r.ActivatedAt)})
		for _, p := range r.Processes {
			add(p.ID, baseID(p.ID), r.ReleaseID, "", p.Pid, p.StartedAt)
		}
	}
	for _, u := range f.Services {
		add(u.ID, u.ID, "", "service", u.Process.Pid, u.Process.StartedAt)
	}
	for _, u := range f.Singletons {
		add(u.ID, u.ID, "", "singleton", u.Process.Pid, u.Process.StartedAt)
	}
	return snap, true, nil
}

// baseID strips the replica suffix of an instance id (worker#0 -> worker).
func baseID(id string) string {
	if i := strings.LastIndexByte(id, '#'); i > 0 {
		return id[:i]
	}
	return id
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// nodeProcessStart says whether pid runs and is the process the Node
// daemon started at startedAt (zero: unknown, any process with the pid),
// and returns its start time in clock ticks.
func nodeProcessStart(pid int, startedAt time.Time, boot time.Time) (uint64, bool) {
	st, err := procfs.ReadStat(pid)
	if err != nil || !st.Live() {
		return 0, false
	}
	if startedAt.IsZero() || boot.IsZero() {
		return st.StartTime, true
	}
	started := boot.Add(time.Duration(st.StartTime) * time.Second / clockTicks)
	d := started.Sub(startedAt)
	return st.StartTime, d < startSlack && d > -startSlack
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's start time: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// bootTime reads the kernel's boot time (btime in /proc/stat); zero when
// it cannot be read.
func bootTime() time.Time {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(n, 0)
			}
		}
	}
	return time.Time{}
}
