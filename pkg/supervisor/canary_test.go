package supervisor

import (
	"context"
	"errors"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

func (h *harness) canary(id string, share int) *CanaryResult {
	h.t.Helper()
	res, err := h.sup.DeployCanary(context.Background(), DeployRequest{ReleasePath: h.release(id, nil), ReleaseID: id}, share, nil)
	if err != nil {
		h.t.Fatalf("deploy --canary %s: %v", id, err)
	}
	return res
}

// The rules around a running canary: the commands that would leave it
// beside another release are refused, stopping it ends it, and a canary
// that never became active is no target of a plain rollback.
func TestCanaryRules(t *testing.T) {
	h := newHarness(t, webConfig(t, "[]"))
	ctx := context.Background()
	if _, err := h.sup.DeployCanary(ctx, DeployRequest{ReleasePath: h.release("v0", nil), ReleaseID: "v0"}, 1000, nil); !errors.Is(err, ErrConflict) {
		t.Errorf("canary with no active release: %v, want ErrConflict", err)
	}
	h.deploy("v1")
	h.canary("v2", proxy.ShareScale)
	if got := h.releaseStatus("v2").State; got != release.Canary {
		t.Errorf("v2 state %q, want canary", got)
	}
	if got, want := h.sup.Summary().Canary, "v2 (100% of new clients)"; got != want {
		t.Errorf("Summary().Canary = %q, want %q (the STATUS= line)", got, want)
	}
	if _, body := h.get("/"); body != "v2" {
		t.Errorf("share 100 %%: answered by %q, want v2", body)
	}
	for name, err := range map[string]error{
		"deploy":      func() error { _, err := h.tryDeploy("v3", nil); return err }(),
		"rollback":    func() error { _, err := h.sup.Rollback(ctx, "", nil); return err }(),
		"stop active": h.sup.Stop(ctx, ""),
		"second canary": func() error {
			_, err := h.sup.DeployCanary(ctx, DeployRequest{ReleasePath: h.release("v4", nil)}, 0, nil)
			return err
		}(),
		"share too high": func() error { _, err := h.sup.RolloutSet(ctx, proxy.ShareScale+1); return err }(),
	} {
		want := ErrConflict
		if name == "share too high" {
			want = ErrInvalid
		}
		if !errors.Is(err, want) {
			t.Errorf("%s during a canary: %v, want %v", name, err, want)
		}
	}
	if h.releaseStatus("v1").State != release.Active {
		t.Errorf("v1 is %s after the refusals, want active", h.releaseStatus("v1").State)
	}

	// Stopping the canary ends it: all traffic goes to v1 again.
	if err := h.sup.Stop(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	if st := h.status(); st.Canary != nil || h.releaseStatus("v2").State != release.Stopped {
		t.Errorf("after stopping the canary: %+v, v2 %s", st.Canary, h.releaseStatus("v2").State)
	}
	if _, body := h.get("/"); body != "v1" {
		t.Errorf("after stopping the canary answered by %q, want v1", body)
	}

	// An aborted canary drains, stops, and is no plain rollback target.
	h.canary("v3", proxy.ShareScale)
	if _, err := h.sup.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "v3 stopped", func() bool { return h.releaseStatus("v3").State == release.Stopped })
	if _, err := h.sup.Rollback(ctx, "", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback after an aborted canary: %v, want ErrNotFound (v1 never had a predecessor)", err)
	}
	if _, err := h.sup.Abort(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("abort with no canary: %v, want ErrNotFound", err)
	}
}
