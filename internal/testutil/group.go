package testutil

import (
	"os/exec"
	"syscall"
	"testing"
)

// StartGroup starts cmd as the leader of a process group of its own, reaps
// it whenever it ends (done is closed then), and kills the group at the
// end of the test.
//
// The kill is skipped once the leader has been reaped: tests run in
// parallel with other packages' tests, and once a group is empty its id
// may be handed to an unrelated process group (another test binary's
// child, say), which a late kill(-pgid) would hit.
func StartGroup(t testing.TB, cmd *exec.Cmd) (done <-chan struct{}) {
	t.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	go func() { _ = cmd.Wait(); close(ch) }() // whatever it exits with, the test checks its own way
	t.Cleanup(func() {
		select {
		case <-ch:
			return // reaped: the group id is no longer its to answer for
		default:
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the leader lives, so the id is still its group's
		<-ch
	})
	return ch
}
