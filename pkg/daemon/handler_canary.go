package daemon

import (
	"context"
	"math"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/supervisor"
)

// The canary commands, mapped like the others (see handler).

// share turns a wire percentage (0 to 100, two decimals) into parts of
// proxy.ShareScale.
func share(percent float64) int { return int(math.Round(percent * proxy.ShareScale / 100)) }

// percent is share's inverse.
func percent(share int) float64 { return float64(share) * 100 / proxy.ShareScale }

// DeployCanary runs the supervisor's canary deploy.
func (h *handler) DeployCanary(ctx context.Context, req control.DeployCanaryRequest, progress func(control.Progress)) (control.CanaryResult, error) {
	res, err := h.sup.DeployCanary(ctx, supervisor.DeployRequest{ReleasePath: req.ReleasePath, ReleaseID: req.ReleaseID, Revision: req.Revision},
		share(req.Percent), progressFunc(progress))
	if err != nil {
		return control.CanaryResult{}, h.fail(control.CmdDeployCanary, err)
	}
	return canaryResult(res, false), nil
}

// RolloutSet changes the canary's share.
func (h *handler) RolloutSet(ctx context.Context, req control.RolloutSetRequest) (control.CanaryResult, error) {
	res, err := h.sup.RolloutSet(ctx, share(req.Percent))
	if err != nil {
		return control.CanaryResult{}, h.fail(control.CmdRolloutSet, err)
	}
	return canaryResult(res, true), nil
}

// RolloutPromote promotes the canary.
func (h *handler) RolloutPromote(ctx context.Context, progress func(control.Progress)) (control.CanaryResult, error) {
	res, err := h.sup.Promote(ctx, progressFunc(progress))
	if err != nil {
		return control.CanaryResult{}, h.fail(control.CmdRolloutPromote, err)
	}
	return canaryResult(res, false), nil
}

// RolloutAbort aborts the canary.
func (h *handler) RolloutAbort(ctx context.Context) (control.CanaryResult, error) {
	res, err := h.sup.Abort(ctx)
	if err != nil {
		return control.CanaryResult{}, h.fail(control.CmdRolloutAbort, err)
	}
	return canaryResult(res, false), nil
}

// canaryResult maps a canary command's result; set marks a rolloutSet,
// whose previous share is sent.
func canaryResult(r *supervisor.CanaryResult, set bool) control.CanaryResult {
	out := control.CanaryResult{ActiveReleaseID: r.ActiveReleaseID}
	if r.CanaryReleaseID != "" {
		id := r.CanaryReleaseID
		out.CanaryReleaseID = &id
		out.Percent = percent(r.Share)
	}
	if set {
		p := percent(r.PreviousShare)
		out.PreviousPercent = &p
	}
	if r.PreviousReleaseID != "" {
		id := r.PreviousReleaseID
		out.PreviousReleaseID = &id
	}
	return out
}

func canaryInfo(c *supervisor.CanaryStatus) *control.CanaryInfo {
	if c == nil {
		return nil
	}
	out := &control.CanaryInfo{ReleaseID: c.ReleaseID, Percent: percent(c.Share), Sticky: "clientAddress"}
	if c.Cookie != "" {
		out.Sticky, out.Cookie = "cookie", c.Cookie
	}
	return out
}
