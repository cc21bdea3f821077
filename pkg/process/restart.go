package process

import (
	"math"
	"time"
)

// restartDelay is base × factor^n, capped by maxDelay (0: no cap), where n
// is the number of restarts already made in the current window. A factor
// below 1 counts as 1, so the delay never shrinks.
func restartDelay(base time.Duration, factor float64, n int, maxDelay time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	if factor < 1 || math.IsNaN(factor) {
		factor = 1
	}
	limit := float64(math.MaxInt64 / 2) // far beyond any useful delay, and safe to convert back
	if maxDelay > 0 {
		limit = min(limit, float64(maxDelay))
	}
	d := float64(base) * math.Pow(factor, float64(n))
	if math.IsInf(d, 0) || d > limit {
		d = limit
	}
	return time.Duration(d)
}

// nextRestart decides what follows a crash. restarts holds the times of
// the automatic restarts made so far; those outside the rolling window are
// dropped (all are kept when the window is 0), so a long clean run resets
// both the count and the backoff. ok is false when the budget is spent.
func nextRestart(base time.Duration, pol RestartPolicy, restarts []time.Time, now time.Time) (kept []time.Time, delay time.Duration, ok bool) {
	kept = restarts
	if pol.Window > 0 {
		kept = restarts[:0:0]
		for _, t := range restarts {
			if now.Sub(t) < pol.Window {
				kept = append(kept, t)
			}
		}
	}
	n := len(kept)
	if pol.MaxRestarts >= 0 && n >= pol.MaxRestarts {
		return kept, 0, false
	}
	return kept, restartDelay(base, pol.BackoffFactor, n, pol.MaxDelay), true
}
