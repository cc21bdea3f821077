package control

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
)

// Canary commands (extensions): deploy a release as a canary beside the
// active one, change its share, promote it, abort it.
const (
	CmdDeployCanary   = "deployCanary"
	CmdRolloutSet     = "rolloutSet"
	CmdRolloutPromote = "rolloutPromote"
	CmdRolloutAbort   = "rolloutAbort"
)

// Percent is a share of new clients, 0 to 100 with at most two decimals
// (finer values are rounded), as sent in a request's "percent" field. The
// zero Percent is absent: left out when sent, and a missing field of a
// command that needs one.
type Percent struct {
	Set   bool
	Value float64
}

// P returns the Percent v.
func P(v float64) Percent { return Percent{Set: true, Value: v} }

// IsZero reports whether p is absent.
func (p Percent) IsZero() bool { return !p.Set }

// MarshalJSON writes the number.
func (p Percent) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, p.Value, 'f', -1, 64), nil
}

// UnmarshalJSON reads a number from 0 to 100.
func (p *Percent) UnmarshalJSON(b []byte) error {
	var v float64
	if err := json.Unmarshal(b, &v); err != nil || math.IsNaN(v) || v < 0 || v > 100 {
		return Errorf(CodeBadRequest, "field \"percent\" must be a number from 0 to 100")
	}
	*p = Percent{Set: true, Value: math.Round(v*100) / 100}
	return nil
}

// DeployCanaryRequest starts a prepared release beside the active one and
// sends Percent of the new clients to it.
type DeployCanaryRequest struct {
	ReleasePath string // required
	ReleaseID   string // default: Revision, else a UTC timestamp
	Revision    string
	Percent     float64 // 0 to 100
}

// RolloutSetRequest changes the running canary's share of new clients.
type RolloutSetRequest struct {
	Percent float64 // 0 to 100
}

func (r DeployCanaryRequest) wire() *Request {
	return &Request{Command: CmdDeployCanary, ReleasePath: r.ReleasePath, ReleaseID: r.ReleaseID, Revision: r.Revision, Percent: P(r.Percent)}
}

func (r RolloutSetRequest) wire() *Request {
	return &Request{Command: CmdRolloutSet, Percent: P(r.Percent)}
}

// CanaryResult answers the canary commands. CanaryReleaseID is null once
// the canary was promoted or aborted; PreviousReleaseID names the release
// a promote retired or the canary an abort retired (left out otherwise);
// PreviousPercent is the share before a rolloutSet (left out otherwise).
type CanaryResult struct {
	ActiveReleaseID   string   `json:"activeReleaseId"`
	CanaryReleaseID   *string  `json:"canaryReleaseId"`
	Percent           float64  `json:"percent"`
	PreviousPercent   *float64 `json:"previousPercent,omitempty"`
	PreviousReleaseID *string  `json:"previousReleaseId,omitempty"`
}

// CanaryInfo is the running canary in a status (an extension): its
// release, its share of new clients, and how clients stick to their side:
// Sticky is "cookie" (Cookie names it) or "clientAddress".
type CanaryInfo struct {
	ReleaseID string  `json:"releaseId"`
	Percent   float64 `json:"percent"`
	Sticky    string  `json:"sticky"`
	Cookie    string  `json:"cookie,omitempty"`
}

// DeployCanary starts a canary. A non-nil progress asks for progress lines.
func (c *Client) DeployCanary(ctx context.Context, req DeployCanaryRequest, progress func(Progress)) (CanaryResult, error) {
	return call[CanaryResult](ctx, c, req.wire(), progress)
}

// RolloutSet changes the running canary's share.
func (c *Client) RolloutSet(ctx context.Context, req RolloutSetRequest) (CanaryResult, error) {
	return call[CanaryResult](ctx, c, req.wire(), nil)
}

// RolloutPromote makes the canary the active release. A non-nil progress
// asks for progress lines.
func (c *Client) RolloutPromote(ctx context.Context, progress func(Progress)) (CanaryResult, error) {
	return call[CanaryResult](ctx, c, &Request{Command: CmdRolloutPromote}, progress)
}

// RolloutAbort drains and stops the canary.
func (c *Client) RolloutAbort(ctx context.Context) (CanaryResult, error) {
	return call[CanaryResult](ctx, c, &Request{Command: CmdRolloutAbort}, nil)
}
