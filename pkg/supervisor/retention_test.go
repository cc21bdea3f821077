package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// releaseIDs lists the releases in status as "id:state", in status order.
func (h *harness) releaseIDs() string {
	var ids []string
	for _, r := range h.status().Releases {
		ids = append(ids, r.ReleaseID+":"+string(r.State))
	}
	return strings.Join(ids, ",")
}

// TestFailedDeployCostsNoRollbackTarget: with keep: 1, deploying A and B
// and then a failing C leaves A as the rollback target (the Node original
// never retains a failed release).
func TestFailedDeployCostsNoRollbackTarget(t *testing.T) {
	src := strings.Replace(webConfig(t, `[]`), "{application: 'test',", "{application: 'test', releaseRetention: {keep: 1},", 1)
	h := newHarness(t, strings.Replace(src, "drainTimeoutMs: 10000", "drainTimeoutMs: 0", 1))
	h.deploy("a")
	h.deploy("b")
	testutil.Eventually(t, "a stopped", func() bool { return strings.Contains(h.releaseIDs(), "a:stopped") })
	h.reconfigure(healthTimeout(3000)) // the app answers 503 for all of it
	if _, err := h.tryDeploy("c", map[string]string{"health": "503"}); err == nil {
		t.Fatal("deploy of an unhealthy release succeeded")
	}
	if got := h.releaseIDs(); !strings.Contains(got, "a:stopped") || strings.Contains(got, "c:") {
		t.Errorf("releases after the failed deploy: %s; want a retained and c absent", got)
	}
	res, err := h.sup.Rollback(context.Background(), "", nil)
	if err != nil {
		t.Fatalf("rollback after a failed deploy: %v", err)
	}
	if res.ActiveReleaseID != "a" {
		t.Errorf("rolled back to %s, want a", res.ActiveReleaseID)
	}
	if _, body := h.get("/"); body != "a" {
		t.Errorf("serving %q, want a", body)
	}
}

// TestFailedRollbackKeepsItsTarget: a rollback whose relaunch fails leaves
// the target retained as it was, so it can be rolled back to later.
func TestFailedRollbackKeepsItsTarget(t *testing.T) {
	h := newHarness(t, strings.Replace(webConfig(t, `[]`), "drainTimeoutMs: 10000", "drainTimeoutMs: 0", 1))
	h.deploy("v1")
	h.deploy("v2")
	testutil.Eventually(t, "v1 stopped", func() bool { return h.releaseIDs() == "v1:stopped,v2:active" })
	before := h.releaseStatus("v1")
	health := filepath.Join(before.ReleasePath, "health")
	if err := os.WriteFile(health, []byte("503"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.reconfigure(healthTimeout(3000))
	if _, err := h.sup.Rollback(context.Background(), "", nil); err == nil {
		t.Fatal("rollback to an unhealthy release succeeded")
	}
	after := h.releaseStatus("v1")
	if after.State != release.Stopped || *after.ActivatedAt != *before.ActivatedAt || *after.StoppedAt != *before.StoppedAt {
		t.Errorf("v1 after the failed rollback: %s\nwant as before: %s", dump(after), dump(before))
	}
	if _, body := h.get("/"); body != "v2" {
		t.Errorf("serving %q, want v2", body)
	}
	if err := os.Remove(health); err != nil {
		t.Fatal(err)
	}
	if res, err := h.sup.Rollback(context.Background(), "", nil); err != nil || res.ActiveReleaseID != "v1" {
		t.Fatalf("second rollback: %v, %v", res, err)
	}
}

// TestFailedRedeployOfAStoppedIDKeepsIt: a deploy that reuses the id of a
// stopped release replaces it in place; if it fails, the stopped release
// is back, as the Node original never puts a failed release in its map.
func TestFailedRedeployOfAStoppedIDKeepsIt(t *testing.T) {
	h := newHarness(t, strings.Replace(webConfig(t, `[]`), "drainTimeoutMs: 10000", "drainTimeoutMs: 0", 1))
	h.deploy("v1")
	h.deploy("v2")
	testutil.Eventually(t, "v1 stopped", func() bool { return h.releaseIDs() == "v1:stopped,v2:active" })
	before := h.releaseStatus("v1")
	h.reconfigure(healthTimeout(3000))
	if _, err := h.tryDeploy("v1", map[string]string{"health": "503"}); err == nil {
		t.Fatal("unhealthy redeploy succeeded")
	}
	after := h.releaseStatus("v1")
	if h.releaseIDs() != "v1:stopped,v2:active" || after.ReleasePath != before.ReleasePath || *after.StoppedAt != *before.StoppedAt {
		t.Errorf("after the failed redeploy: %s\nwant v1 as before: %s", dump(h.status().Releases), dump(before))
	}
	if res, err := h.sup.Rollback(context.Background(), "v1", nil); err != nil || res.ActiveReleaseID != "v1" {
		t.Errorf("rollback to v1: %v %v", res, err)
	}
}
