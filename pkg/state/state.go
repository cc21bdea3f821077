package state

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// Version is the snapshot format version this code writes and reads.
const Version = 1

// MaxEvents is how many recent events a snapshot carries.
const MaxEvents = 100

// Snapshot is what the daemon persists.
type Snapshot struct {
	Version     int       `json:"version"`
	Application string    `json:"application"`
	SavedAt     time.Time `json:"savedAt"`
	DaemonPid   int       `json:"daemonPid"`
	// Stopped is true when the daemon stopped every process before
	// exiting (SIGTERM, e.g. systemctl stop or a reboot): nothing can be
	// orphaned, and the active release may be restored.
	Stopped         bool            `json:"stopped"`
	ActiveReleaseID string          `json:"activeReleaseId,omitempty"`
	Releases        []ReleaseRecord `json:"releases"`
	Processes       []ProcessRecord `json:"processes"`
	Events          []events.Event  `json:"events"`
	// Instances are the daemon-instance tokens (internal/runtoken) of
	// the daemons whose processes may still run: the writer's own, which
	// it records before it starts any process, and those of earlier
	// daemons whose processes it found alive at its start. Every process
	// such a daemon started carries INSTANCE.RUN in ROLLBRIDGE_RUN, so
	// FindOrphans finds those the list of Processes misses.
	Instances []string `json:"instances,omitempty"`
	// HostDrained is true while the host is drained (rollbridgectl
	// drain-host): a restarted daemon keeps answering its load balancer's
	// health check 503 until undrain-host.
	HostDrained bool `json:"hostDrained,omitempty"`
	// HostDrainedSince is when it was drained (status shows it); zero in
	// files written before it was kept.
	HostDrainedSince time.Time `json:"hostDrainedSince,omitzero"`

	// Maintenance is the maintenance mode in force, so that it survives
	// a daemon restart; nil when off.
	Maintenance *Maintenance `json:"maintenance,omitempty"`

	// owner is the user id of the file Load or Read read this snapshot
	// from, and ownerKnown whether it may be trusted (see FindOrphans).
	owner      uint32
	ownerKnown bool

	// Node is set when Read found the Node original's state file instead
	// (never written; see node.go).
	Node *NodeOrigin `json:"-"`
}

// Maintenance records maintenance mode: when it began, the message and
// the operator's page ("" for the default one).
type Maintenance struct {
	Since   time.Time `json:"since"`
	Message string    `json:"message,omitempty"`
	Page    string    `json:"page,omitempty"`
}

// ReleaseRecord is one live or retained release.
type ReleaseRecord struct {
	ID          string         `json:"id"`
	Path        string         `json:"path"`
	Revision    string         `json:"revision,omitempty"`
	State       string         `json:"state"`
	ActivatedAt time.Time      `json:"activatedAt,omitzero"`
	RetiredAt   time.Time      `json:"retiredAt,omitzero"`
	Ports       map[string]int `json:"ports,omitempty"`
}

// ProcessRecord is one managed process that was running.
type ProcessRecord struct {
	ID        string `json:"id"`                  // instance id
	ProcessID string `json:"processId"`           // base id
	ReleaseID string `json:"releaseId,omitempty"` // "" for a service or singleton: no release owns it
	Policy    string `json:"policy"`
	Pid       int    `json:"pid"`
	// StartTime (clock ticks since boot, /proc/PID/stat field 22) tells the
	// original process from a later one that got the same pid.
	StartTime      uint64 `json:"startTime"`
	Restarts       int    `json:"restarts"`
	MemoryRestarts int    `json:"memoryRestarts"`
	// Port is a service's or singleton's port (a release's are in its
	// ReleaseRecord), so a daemon that adopts it keeps rendering
	// {{ports.ID}} with the port it listens on; for a proxied instance,
	// the port it listens on, which tells a memory replacement from the
	// copy it replaces when both run (the release's port is the serving
	// one's).
	Port int `json:"port,omitempty"`
	// StartedAt is when the run started, for the status of a daemon that
	// adopts it (a systemd unit outlives the daemon).
	StartedAt time.Time `json:"startedAt,omitzero"`
}

// CorruptError is a state file that exists but cannot be used.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state file %s is unreadable (%v); it is ignored and will be overwritten", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Load reads a snapshot. A missing file returns an error matching
// os.ErrNotExist; a torn or foreign file returns *CorruptError.
func Load(path string) (*Snapshot, error) {
	b, owner, ok, err := readOwned(path)
	if err != nil {
		return nil, err
	}
	s, err := parse(path, b)
	if err != nil {
		return nil, err
	}
	s.owner, s.ownerKnown = owner, ok
	return s, nil
}

// readOwned reads the file at path and says who owns the file it read
// (fstat of the same descriptor, so a file swapped in meanwhile cannot
// lend it another owner). ok is false when others than its owner may
// write it (group or other write bits): then its content is nobody's in
// particular.
func readOwned(path string) (b []byte, owner uint32, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, false, err
	}
	st, isSys := fi.Sys().(*syscall.Stat_t)
	ok = isSys && fi.Mode().IsRegular() && fi.Mode().Perm()&0o022 == 0
	if isSys {
		owner = st.Uid
	}
	b, err = io.ReadAll(f)
	return b, owner, ok, err
}

// parse decodes rollbridged's format.
func parse(path string, b []byte) (*Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, &CorruptError{Path: path, Err: err}
	}
	if s.Version != Version {
		return nil, &CorruptError{Path: path, Err: fmt.Errorf("format version %d, want %d", s.Version, Version)}
	}
	return &s, nil
}

// Save writes snap to path atomically: a temporary file in the same
// directory, fsync, rename over path, fsync of the directory. It is the one
// place a snapshot reaches the disk, so it is where secrets are kept out:
// the events' data is written without the keys that can carry a command
// line, a working directory, an environment or process output (see
// secretKey). snap itself is not changed, apart from its Version.
//
// A failure names the state file and the step that failed, and ends in the
// system's reason ("write state file /var/lib/x.json: rename temporary
// file into place: permission denied"). It never names the temporary
// file, whose name is random: the same problem always reads the same, so
// the daemon can report it once.
func Save(path string, snap *Snapshot) error {
	snap.Version = Version
	safe := *snap
	evs, err := scrubEvents(snap.Events)
	if err != nil {
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	safe.Events = evs
	b, err := json.MarshalIndent(&safe, "", " ")
	if err != nil {
		return fmt.Errorf("write state file %s: encode: %w", path, err)
	}
	dir := filepath.Dir(path)
	f, err := createTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write state file %s: cannot create a file in %s: %w", path, dir, reason(err))
	}
	tmp := f.Name()
	fail := func(step string, err error) error {
		_ = f.Close()      // already failing
		_ = os.Remove(tmp) // do not leave temporaries behind
		return fmt.Errorf("write state file %s: %s: %w", path, step, reason(err))
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fail("write temporary file", err)
	}
	if err := f.Sync(); err != nil {
		return fail("sync temporary file", err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail("chmod temporary file", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write state file %s: close temporary file: %w", path, reason(err))
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write state file %s: rename temporary file into place: %w", path, reason(err))
	}
	// The rename is durable only once the directory entry is on disk.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: some filesystems refuse fsync on directories
		_ = d.Close()
	}
	return nil
}

// createTemp creates a new file named prefix plus a random suffix in dir,
// mode 0600, for writing. Like os.CreateTemp it insists on a new file:
// O_CREAT|O_EXCL never follows a symlink planted under the name it picks
// (in a directory others can write), it fails instead and another name
// is tried. O_NOFOLLOW says the same explicitly, so that guarantee does
// not rest on a reader knowing that rule.
func createTemp(dir, prefix string) (*os.File, error) {
	for range 100 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		name := filepath.Join(dir, prefix+hex.EncodeToString(b[:]))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if errors.Is(err, os.ErrExist) || errors.Is(err, syscall.ELOOP) {
			continue // taken: pick another name
		}
		return f, err
	}
	return nil, &os.PathError{Op: "createtemp", Path: filepath.Join(dir, prefix+"*"), Err: os.ErrExist}
}

// reason strips the file names from err (an *os.PathError or
// *os.LinkError names the temporary file), leaving the system's reason,
// such as syscall.ENOSPC, which errors.Is still finds.
func reason(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// Remove deletes the state file; a missing file is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Orphan is a managed process of a previous daemon that is still alive.
// ReleaseID is the release it belonged to; "" for a service or singleton,
// which no release owns, and its JSON then has "releaseId": null, as the
// Node original's orphans have.
type Orphan struct {
	ID        string `json:"id"`
	Pid       int    `json:"pid"`
	ReleaseID string `json:"releaseId"`
	// Unrecorded: the state file does not list it; FindOrphans found it
	// by its run token (a process that left its group, or one started
	// after the daemon's last write). Its ID and ReleaseID are what its
	// environment says, when they are well-formed ids.
	Unrecorded bool `json:"unrecorded,omitempty"`
	// StartTime is its start time (procfs): whatever stops it checks the
	// pid still names this process.
	StartTime uint64 `json:"-"`
	// Group: it leads its process group, and is stopped with the group.
	Group bool `json:"-"`
	// Instance is the daemon instance whose token it carries; "" when
	// unknown (no readable token).
	Instance string `json:"-"`
}

// MarshalJSON writes {"id","pid","releaseId"}, releaseId null when "",
// and "unrecorded": true for a process the state file does not list.
func (o Orphan) MarshalJSON() ([]byte, error) {
	var rel *string
	if o.ReleaseID != "" {
		rel = &o.ReleaseID
	}
	return json.Marshal(struct {
		ID         string  `json:"id"`
		Pid        int     `json:"pid"`
		ReleaseID  *string `json:"releaseId"`
		Unrecorded bool    `json:"unrecorded,omitempty"`
	}{o.ID, o.Pid, rel, o.Unrecorded})
}

// Orphans returns the recorded processes that still run: same pid and same
// start time. A pid that was recycled by an unrelated process is not one.
// It reads only the recorded pids; FindOrphans also finds the processes
// the list misses.
func (s *Snapshot) Orphans() []Orphan {
	out := []Orphan{}
	if s == nil {
		return out
	}
	for _, p := range s.Processes {
		if Alive(p.Pid, p.StartTime) {
			// rollbridge starts every process as the leader of its own group.
			out = append(out, Orphan{ID: p.ID, Pid: p.Pid, ReleaseID: p.ReleaseID, StartTime: p.StartTime, Group: true})
		}
	}
	return out
}

// Alive reports whether pid runs and started at startTime (0: any time).
func Alive(pid int, startTime uint64) bool { return procfs.Alive(pid, startTime) }

// StartTime returns pid's start time in clock ticks since boot.
func StartTime(pid int) (uint64, error) { return procfs.StartTime(pid) }
