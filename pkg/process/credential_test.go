package process

import (
	"context"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// nobody is the unprivileged user the credential tests switch to.
func nobody(t *testing.T) *Credential {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("look up nobody: %v", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &Credential{User: "nobody", Group: "(the user's)", UID: uint32(uid), GID: uint32(gid)}
}

// As root, the exec runner runs the process and its stop hook as the
// spec's user, with that user's group and no supplementary groups; not as
// root, it refuses to start one as another user and says why.
func TestExecRunnerRunsAsTheSpecsUser(t *testing.T) {
	t.Parallel()
	cred := nobody(t)
	spec := Spec{
		// A directory nobody may enter (a test's temp dir is 0700 root's).
		ID: "web", Dir: "/", Env: []string{"PATH=/usr/bin:/bin"},
		Command:      `echo "run as $(id -u):$(id -g) groups $(id -G)"; while :; do sleep 0.05; done`,
		Lifecycle:    Lifecycle{QuietCommand: `echo "hook as $(id -u):$(id -g)"`},
		GracefulStop: 5 * time.Second, Restart: RestartPolicy{MaxRestarts: 0},
		Credential: cred,
	}
	p := New(spec, ExecRunner{}, nil)
	err := p.Start(context.Background(), ReasonDeploy)
	if os.Geteuid() != 0 {
		if err == nil || !strings.Contains(err.Error(), "not root") {
			t.Fatalf("start as nobody by uid %d: %v, want an error saying the daemon is not root", os.Geteuid(), err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	ids := strconv.Itoa(int(cred.UID)) + ":" + strconv.Itoa(int(cred.GID))
	want := "run as " + ids + " groups " + strconv.Itoa(int(cred.GID))
	testutil.Eventually(t, "the process's output", func() bool { return hasLine(p.Logs(), want) })
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !hasLine(p.Logs(), "[quietCommand] hook as "+ids) {
		t.Errorf("the quiet hook did not run as %s: %v", ids, p.Logs())
	}
}

// The daemon's own user needs no switch, so any daemon runs it.
func TestSysCredentialOwnUserIsNoSwitch(t *testing.T) {
	c, err := sysCredential(&Credential{User: "me", UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())})
	if c != nil || err != nil {
		t.Errorf("own user: %+v, %v; want no credential and no error", c, err)
	}
	if c, err := sysCredential(nil); c != nil || err != nil {
		t.Errorf("nil: %+v, %v", c, err)
	}
}
