package state

import (
	"os"
	"os/user"
	"regexp"
	"strconv"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/runtoken"
)

// The variables FindOrphans reads besides the token, to name what it found
// (the supervisor sets them in every managed process's environment).
const (
	envProcessID    = "ROLLBRIDGE_PROCESS_ID"
	envReleaseID    = "ROLLBRIDGE_RELEASE_ID"
	envReplicaIndex = "ROLLBRIDGE_REPLICA_INDEX"
	envReplicaCount = "ROLLBRIDGE_REPLICA_COUNT"
)

// FindOrphans returns the processes of the daemons this snapshot names
// that still run: the recorded ones (as Orphans), and — when the snapshot
// records instances (Instances) — every other live process whose
// ROLLBRIDGE_RUN token carries one of them: processes that left their
// process group and session (setsid), and processes started after the
// daemon's last write (it records its instance before it starts any).
//
// It reads every process of the host once (procfs.AllPids), so it is for
// work that runs once: rollbridgectl recover and doctor, and the daemon's
// start. Never call it periodically.
//
// Environments are anyone's to fill, so a token alone proves nothing. A
// process is taken only when all of its user ids (real, effective, saved,
// filesystem) are ones the daemon could have run it as:
//
//   - the owner of the state file this snapshot was read from (the
//     daemon's user: the daemon creates the file, 0600), when that file
//     is writable by nobody else;
//   - the processUIDs (the users the config runs processes as), only
//     when that owner is root, the one user who can start processes as
//     others.
//
// A snapshot not read from a file (built in memory) or read from a file
// others may write finds only the recorded processes. The reader itself
// and its ancestors are never returned. What it finds by token is listed
// once per process group it leads, or per process when it leads none;
// members of a recorded process's group are stopped with that group and
// are not listed.
func (s *Snapshot) FindOrphans(processUIDs []uint32) []Orphan {
	out := s.Orphans()
	if s == nil {
		return out
	}
	insts := map[string]bool{}
	for _, in := range s.Instances {
		if runtoken.Valid(in) {
			insts[in] = true
		}
	}
	for i := range out {
		if in := runtoken.Instance(envToken(out[i].Pid)); insts[in] {
			out[i].Instance = in
		}
	}
	if len(insts) == 0 || !s.ownerKnown {
		return out
	}
	allowed := map[uint32]bool{s.owner: true}
	if s.owner == 0 {
		for _, u := range processUIDs {
			allowed[u] = true
		}
	}
	pids, err := procfs.AllPids()
	if err != nil {
		return out // no /proc to read: what the file records is all there is
	}
	skip := ancestors()
	covered := map[int]bool{} // groups a recorded orphan leads
	for _, o := range out {
		skip[o.Pid] = true
		covered[o.Pid] = true
	}
	type found struct {
		st   procfs.Stat
		env  map[string]string
		inst string
	}
	var fs []found
	leaders := map[int]bool{}
	for _, pid := range pids {
		if skip[pid] {
			continue
		}
		st, err := procfs.ReadStat(pid)
		if err != nil || !st.Live() || st.Pid == kthreadd || st.Ppid == kthreadd || !ownedBy(pid, allowed) {
			continue // gone, a zombie, a kernel thread, or another user's
		}
		env := environ(pid)
		inst := runtoken.Instance(env[runtoken.Env])
		if !insts[inst] {
			continue
		}
		// Still the process whose owner and environment were read: a pid
		// that changed hands meanwhile has another start time.
		if again, err := procfs.ReadStat(pid); err != nil || again.StartTime != st.StartTime {
			continue
		}
		fs = append(fs, found{st, env, inst})
		if st.Pgrp == st.Pid {
			leaders[st.Pid] = true
		}
	}
	for _, f := range fs {
		lead := f.st.Pgrp == f.st.Pid
		if covered[f.st.Pgrp] || (!lead && leaders[f.st.Pgrp]) {
			continue // stopped with the group its leader heads
		}
		id, rel := names(f.env)
		out = append(out, Orphan{ID: id, Pid: f.st.Pid, ReleaseID: rel, Unrecorded: true,
			StartTime: f.st.StartTime, Group: lead, Instance: f.inst})
	}
	return out
}

// LiveInstances returns the instances, of those orphans names, that still
// have a process: the ones a state file must keep recording.
func LiveInstances(orphans []Orphan) []string {
	var out []string
	seen := map[string]bool{}
	for _, o := range orphans {
		if o.Instance != "" && !seen[o.Instance] && Alive(o.Pid, o.StartTime) {
			seen[o.Instance] = true
			out = append(out, o.Instance)
		}
	}
	return out
}

// kthreadd is the parent of every kernel thread, which has no environment.
const kthreadd = 2

// The environment of a process in the middle of an execve reads as empty
// for a moment (the new image is not set up yet): one that reads empty is
// read again, up to emptyRetries times, emptyPause apart. That costs only
// for the rare live user process with an empty environment (env -i).
const (
	emptyRetries = 5
	emptyPause   = 2 * time.Millisecond
)

// environ reads the variables FindOrphans uses from pid's environment.
func environ(pid int) map[string]string {
	for i := 0; ; i++ {
		env, empty := procfs.EnvValues(pid, runtoken.Env, envProcessID, envReleaseID, envReplicaIndex, envReplicaCount)
		if !empty || i == emptyRetries || !procfs.Alive(pid, 0) {
			return env
		}
		time.Sleep(emptyPause)
	}
}

// envToken is pid's ROLLBRIDGE_RUN, "" when unreadable.
func envToken(pid int) string {
	return environ(pid)[runtoken.Env]
}

// ownedBy reports whether every user id of pid is in allowed: a process
// that changed (or can change back to) another user is not ours to stop.
func ownedBy(pid int, allowed map[uint32]bool) bool {
	ids, err := procfs.UIDs(pid)
	if err != nil {
		return false
	}
	for _, id := range ids {
		if !allowed[id] {
			return false
		}
	}
	return true
}

// ancestors returns this process and its ancestors: a reader started from
// a managed process (a hook running rollbridgectl, say) never stops itself
// or what waits for it.
func ancestors() map[int]bool {
	out := map[int]bool{}
	for pid := os.Getpid(); pid > 0 && !out[pid]; {
		out[pid] = true
		st, err := procfs.ReadStat(pid)
		if err != nil {
			break
		}
		pid = st.Ppid
	}
	return out
}

// idPattern is the form of release ids (config.CheckReleaseID) and of
// process ids; a value of another form is not shown.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`)

// names says which process and release a process found by token belongs
// to, from its environment: untrusted text, shown only when it has the
// form of an id. The instance id gets its replica suffix (worker#1) when
// the process has replicas.
func names(env map[string]string) (id, release string) {
	id = "unknown"
	if p := env[envProcessID]; idPattern.MatchString(p) {
		id = p
		if n, err := strconv.Atoi(env[envReplicaCount]); err == nil && n > 1 {
			if i, err := strconv.Atoi(env[envReplicaIndex]); err == nil && i >= 0 && i < n {
				id += "#" + strconv.Itoa(i)
			}
		}
	}
	if r := env[envReleaseID]; idPattern.MatchString(r) {
		release = r
	}
	return id, release
}

// LookupUIDs resolves users (names or numbers, as a config gives them) to
// user ids for FindOrphans. A number stands for itself; a name the host
// does not know is left out (no process can run as it).
func LookupUIDs(users []string) []uint32 {
	var out []uint32
	for _, u := range users {
		if n, err := strconv.ParseUint(u, 10, 32); err == nil {
			out = append(out, uint32(n))
			continue
		}
		if pw, err := user.Lookup(u); err == nil {
			if n, err := strconv.ParseUint(pw.Uid, 10, 32); err == nil {
				out = append(out, uint32(n))
			}
		}
	}
	return out
}
