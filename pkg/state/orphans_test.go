package state

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/runtoken"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// startWith starts argv with env (and attrs) and returns its pid; the
// process (or its session or group) is killed at the end of the test.
func startWith(t *testing.T, env []string, attr *syscall.SysProcAttr, argv ...string) int {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	cmd.SysProcAttr = attr
	if attr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = !cmd.SysProcAttr.Setsid // a group of its own either way
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
			return
		default:
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // it leads its group, which lives while it does
		<-done
	})
	testutil.Eventually(t, "the exec of "+argv[0], func() bool {
		v, ok := procfs.EnvValue(cmd.Process.Pid, "PATH") // the new image's environment is in place
		return ok && v == "/usr/bin:/bin"
	})
	return cmd.Process.Pid
}

func savedSnapshot(t *testing.T, snap *Snapshot, mode os.FileMode) *Snapshot {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.json")
	if err := Save(path, snap); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pidsOf(orphans []Orphan) []int {
	var out []int
	for _, o := range orphans {
		out = append(out, o.Pid)
	}
	slices.Sort(out)
	return out
}

// TestFindOrphans: besides the recorded processes, FindOrphans finds the
// processes carrying a recorded instance's token — a setsid'd escapee, a
// process the file does not list — once per process group, names them
// from their environment when the names are well-formed, and leaves alone
// other instances' processes, other users' (unless the config runs
// processes as them) and everything when the file is not trustworthy.
func TestFindOrphans(t *testing.T) {
	testutil.NeedRoot(t) // stages a process of another user
	inst, other := runtoken.NewInstance(), runtoken.NewInstance()
	tok := func(in string) string { return runtoken.Env + "=" + runtoken.New(in) }

	recorded := startWith(t, []string{tok(inst)}, nil, "sh", "-c", "sleep 1000 & wait") // its sleep is a member of its group
	start, _ := StartTime(recorded)
	escaped := startWith(t, []string{tok(inst), "ROLLBRIDGE_PROCESS_ID=worker", "ROLLBRIDGE_RELEASE_ID=v3",
		"ROLLBRIDGE_REPLICA_INDEX=1", "ROLLBRIDGE_REPLICA_COUNT=2"}, &syscall.SysProcAttr{Setsid: true}, "sleep", "1001")
	pool := startWith(t, []string{tok(inst), "ROLLBRIDGE_PROCESS_ID=bad\x1b[31mid"}, &syscall.SysProcAttr{Setsid: true},
		"sh", "-c", "sleep 1002 & wait") // a leader whose member is stopped with it
	startWith(t, []string{tok(other)}, nil, "sleep", "1003")                // another daemon's
	startWith(t, []string{runtoken.Env + "=" + inst}, nil, "sleep", "1004") // the instance alone is no run token
	nobody := startWith(t, []string{tok(inst)}, &syscall.SysProcAttr{Setsid: true,
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}, "sleep", "1005") // forged by another user

	snap := &Snapshot{Instances: []string{inst}, Processes: []ProcessRecord{{ID: "web", Pid: recorded, StartTime: start, ReleaseID: "v3"}}}
	s := savedSnapshot(t, snap, 0o600)

	got := s.FindOrphans(nil)
	if want := []int{recorded, escaped, pool}; !slices.Equal(pidsOf(got), sortedInts(want)) {
		t.Fatalf("found %+v, want pids %v (recorded, escaped, pool leader)", got, want)
	}
	for _, o := range got {
		switch o.Pid {
		case recorded:
			if o.Unrecorded || !o.Group || o.ID != "web" || o.Instance != inst {
				t.Errorf("recorded: %+v", o)
			}
		case escaped:
			if !o.Unrecorded || !o.Group || o.ID != "worker#1" || o.ReleaseID != "v3" || o.Instance != inst {
				t.Errorf("escaped: %+v, want worker#1 of v3, unrecorded, leading its group", o)
			}
		case pool:
			if o.ID != "unknown" || o.ReleaseID != "" {
				t.Errorf("pool: %+v, want its malformed id not shown", o)
			}
		}
	}
	if got := LiveInstances(got); !slices.Equal(got, []string{inst}) {
		t.Errorf("live instances %v, want [%s]", got, inst)
	}

	// A process user of the config counts when the file is root's.
	if got := s.FindOrphans([]uint32{65534}); !slices.Contains(pidsOf(got), nobody) {
		t.Errorf("with uid 65534 configured: %v lacks %d", pidsOf(got), nobody)
	}
	// Not read from a file, or from one others may write: the recorded only.
	for name, s := range map[string]*Snapshot{"in memory": snap, "group-writable file": savedSnapshot(t, snap, 0o620)} {
		if got := s.FindOrphans([]uint32{65534}); !slices.Equal(pidsOf(got), []int{recorded}) {
			t.Errorf("%s: found %v, want only the recorded %d", name, pidsOf(got), recorded)
		}
	}
	// A file that is not root's vouches for its owner's processes only:
	// no one but root can start processes as the configured users.
	path := filepath.Join(t.TempDir(), "nobody.json")
	if err := Save(path, snap); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	theirs, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := theirs.FindOrphans([]uint32{0}); !slices.Equal(pidsOf(got), sortedInts([]int{recorded, nobody})) {
		t.Errorf("file of uid 65534: found %v, want the recorded %d and uid 65534's %d", pidsOf(got), recorded, nobody)
	}
}

func sortedInts(v []int) []int {
	out := slices.Clone(v)
	slices.Sort(out)
	return out
}
