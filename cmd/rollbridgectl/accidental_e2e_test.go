package main

import (
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// The tests in this file pin deviations from the Node original that were
// accidents and are now fixed (issue 11, the review of docs/migrating.md
// §3), through rollbridgectl and the daemon.

// settled waits until no release is starting or draining.
func (e *env) settled() {
	e.t.Helper()
	testutil.Eventually(e.t, "no release starting or draining", func() bool {
		ids := e.releaseIDs()
		return !strings.Contains(ids, ":draining") && !strings.Contains(ids, ":starting")
	})
}

// Retention keeps the releases stopped most recently, as the original
// does: a release a rollback brought back keeps its old place in the list,
// yet it is the newest rollback target once it retires again.
func TestE2ERetentionKeepsTheMostRecentlyStopped(t *testing.T) {
	e := startReloading(t, `releaseRetention: {keep: 2},`, `{}`, `[]`)
	for _, id := range []string{"v1", "r2", "r3"} {
		e.mustDeploy(id)
		e.settled()
	}
	var res map[string]any
	e.ok(&res, "rollback", "--release-id", "v1")
	e.settled()
	e.mustDeploy("r4")
	e.settled()
	if got, want := e.releaseIDs(), "v1:stopped,r3:stopped,r4:active"; got != want {
		t.Errorf("releases %s, want %s (r2 stopped first and goes first)", got, want)
	}
	e.ok(&res, "rollback")
	if res["activeReleaseId"] != "v1" {
		t.Errorf("rollback went to %v, want v1, the release that served last", res["activeReleaseId"])
	}
}
