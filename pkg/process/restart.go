package process

import (
	"math"
	"time"
)

// restartDelay is base × factor^n, capped by maxDelay (0: no cap), where n
// is the number of restarts already counted in the current window.
func restartDelay(base time.Duration, factor float64, n int, maxDelay time.Duration) time.Duration {
	if factor < 1 {
		factor = 1
	}
	d := float64(base) * math.Pow(factor, float64(n))
	limit := float64(math.MaxInt64 / 2)
	if maxDelay > 0 {
		limit = math.Min(limit, float64(maxDelay))
	}
	if d > limit || math.IsInf(d, 0) || math.IsNaN(d) {
		d = limit
	}
	return time.Duration(d)
}

// inWindow drops restart times older than window (0: keep all) and returns
// what is left.
func inWindow(times []time.Time, now time.Time, window time.Duration) []time.Time {
	if window <= 0 {
		return times
	}
	keep := times[:0]
	for _, t := range times {
		if now.Sub(t) < window {
			keep = append(keep, t)
		}
	}
	return keep
}
