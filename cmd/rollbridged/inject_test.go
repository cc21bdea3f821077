package main

// Values from a deploy request never become shell syntax
// (docs/security.md, "Deploy requests and the shell"): the attack from the
// hardening review against the shipped demo config, and a release path
// made of shell syntax reaching a command verbatim.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// TestDemoConfigRevisionCannotRunCommands deploys to examples/demo.jsonnet
// (whose worker echoes "... of {{releaseId}}" inside double quotes) with a
// revision that is a valid git branch name and a command substitution. It
// is refused, naming the character, and runs nothing.
func TestDemoConfigRevisionCannotRunCommands(t *testing.T) {
	f := newFixture(t, 0, "{}")
	demo, err := filepath.Abs("../../examples/demo.jsonnet")
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = demo
	exe, _ := os.Executable()
	app := filepath.Join(f.dir, "app.sh") // the demo app's stand-in: this test binary, on the port it is given
	if err := os.WriteFile(app, []byte(fmt.Sprintf("#!/bin/sh\nPORT=$2 RB_TESTAPP=1 exec %s\n", exe)), 0o755); err != nil {
		t.Fatal(err)
	}
	f.start([]string{"ROLLBRIDGE_DEMO_SOCKET=" + f.sock, "ROLLBRIDGE_DEMO_PORT=0", "ROLLBRIDGE_DEMO_APP=" + app}, "")
	f.waitReady()
	pwned := filepath.Join(f.dir, "pwned")
	revision := "fix$(touch${IFS}" + pwned + ")"
	if git, err := exec.LookPath("git"); err == nil { // the attack needs nothing git refuses
		if out, err := exec.Command(git, "check-ref-format", "--branch", revision).Output(); err != nil || strings.TrimSpace(string(out)) != revision {
			t.Fatalf("git check-ref-format --branch %q: %q, %v", revision, out, err)
		}
	}
	rel := f.releaseDir("r1")
	for _, req := range []control.DeployRequest{
		{ReleasePath: rel, Revision: revision},
		{ReleasePath: rel, ReleaseID: "v1", Revision: revision},
		{ReleasePath: rel, ReleaseID: revision},
	} {
		_, err := f.client().Deploy(context.Background(), req, nil)
		var ce *control.Error
		if !errors.As(err, &ce) || ce.Code != control.CodeBadRequest || !strings.Contains(ce.Message, "'$' at position 4 is not allowed") {
			t.Errorf("deploy %+v: got %v, want a bad_request naming '$' at position 4", req, err)
		}
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("a revision ran a command as the daemon's user")
	}
	// The setup works: a valid revision deploys, and its worker runs.
	if _, err := f.client().Deploy(context.Background(), control.DeployRequest{ReleasePath: rel, Revision: "fix-touch"}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the demo worker's first line", func() bool {
		logs, err := f.client().Logs(context.Background(), control.LogsRequest{ProcessID: "worker#0"})
		return err == nil && len(logs.Processes) == 1 && len(logs.Processes[0].Logs) > 0 &&
			logs.Processes[0].Logs[0].Line == "worker 0/2 of fix-touch"
	})
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("a revision ran a command as the daemon's user")
	}
}

// TestReleasePathReachesCommandsVerbatim deploys a release directory whose
// name is shell syntax — command substitutions, quotes, a newline — to a
// config that passes {{releasePath}} in a bare word, inside double
// quotes and inside a word. The command receives the path exactly, and
// nothing in it runs.
func TestReleasePathReachesCommandsVerbatim(t *testing.T) {
	f0 := newFixture(t, 0, "{}")
	out := filepath.Join(f0.dir, "args")
	f := newFixture(t, 0, fmt.Sprintf(`{processes+: [{id: 'args', policy: 'companion', command: |||
	  printf '%%s\0' {{releasePath}} "{{releasePath}}" x{{releasePath}}y "$ROLLBRIDGE_RELEASE_PATH" > %s; exec sleep 1000
	|||}]}`, out))
	f.start(nil, "")
	f.waitReady()
	name := "r $(touch pwned1) `touch pwned2` ';touch pwned3;' \"x\" \\\nnewline $HOME * ~"
	rel := filepath.Join(f.dir, name)
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client().Deploy(context.Background(), control.DeployRequest{ReleasePath: rel, ReleaseID: "v1"}, nil); err != nil {
		t.Fatalf("deploy %q: %v", rel, err)
	}
	var got []string
	testutil.Eventually(t, "the args process to print its arguments", func() bool {
		b, _ := os.ReadFile(out)
		got = strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		return len(got) == 4
	})
	if want := []string{rel, rel, "x" + rel + "y", rel}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the command got %q, want %q", got, want)
	}
	for _, p := range []string{"pwned1", "pwned2", "pwned3"} {
		if _, err := os.Stat(filepath.Join(rel, p)); err == nil {
			t.Errorf("the release path ran a command: %s exists", p)
		}
	}
}
