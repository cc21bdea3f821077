package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"
)

// HealthCheck describes how to decide that a new release may take traffic.
type HealthCheck struct {
	URL        string        // e.g. http://127.0.0.1:18182/ping
	Timeout    time.Duration // total window for the first healthy answer, after StartDelay
	Interval   time.Duration // the longest pause between two probes
	StartDelay time.Duration
}

// Probing schedule. For the first fastPhase the pause between probes is
// firstPause; after that it doubles up to Interval. Most apps are ready
// within a second of starting, and a refused connection costs next to
// nothing, so polling fast at first makes the switch follow readiness by a
// few milliseconds (the Node original's fixed 250 ms poll added ~300 ms to
// most deploys); an app that boots for longer is not hammered.
const (
	firstPause = 5 * time.Millisecond
	fastPhase  = time.Second
)

// probeTimeout bounds one probe so a hung handler cannot eat the window.
const probeTimeout = 5 * time.Second

// HealthError is a failed health check: the URL and the last reason.
type HealthError struct {
	URL    string
	Reason string
}

func (e *HealthError) Error() string {
	return fmt.Sprintf("health check failed for %s: %s", e.URL, e.Reason)
}

// ErrExited is returned (wrapped) when the process exits before it is healthy.
var ErrExited = errors.New("process exited before becoming healthy")

// WaitHealthy probes hc.URL until it answers 2xx, the window closes, ctx
// ends, or exited is closed (the process died: no point waiting). client
// may be nil.
func WaitHealthy(ctx context.Context, client *http.Client, hc HealthCheck, exited <-chan struct{}) error {
	if client == nil {
		client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	if hc.StartDelay > 0 {
		t := time.NewTimer(hc.StartDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-exited:
			t.Stop()
			return ErrExited
		}
	}
	began := time.Now()
	deadline := began.Add(hc.Timeout)
	pause := firstPause
	reason := "no answer yet"
	for {
		select {
		case <-exited:
			return ErrExited
		default:
		}
		left := time.Until(deadline)
		ok, why := probe(ctx, client, hc.URL, min(probeTimeout, left))
		if ok {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A probe cut short by the closing window says nothing new; keep
		// the reason the app gave before (say, HTTP 503).
		if !(left < probeTimeout && time.Until(deadline) <= 0 && reason != "no answer yet") {
			reason = why
		}
		wait := min(pause, time.Until(deadline))
		if wait <= 0 {
			return &HealthError{URL: hc.URL, Reason: fmt.Sprintf("%s (no healthy answer within %v)", reason, hc.Timeout)}
		}
		if err := waitBetweenProbes(ctx, wait, exited); err != nil {
			return err
		}
		if time.Since(began) >= fastPhase {
			pause = min(pause*2, max(hc.Interval, firstPause))
		}
	}
}

func probe(ctx context.Context, client *http.Client, url string, timeout time.Duration) (bool, string) {
	if timeout <= 0 {
		timeout = time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return false, "connection refused (ECONNREFUSED)"
		case errors.Is(err, context.DeadlineExceeded):
			return false, fmt.Sprintf("no answer within %v", timeout.Round(time.Millisecond))
		}
		return false, err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return true, ""
}

// waitBetweenProbes waits for d, the pause between two probes of a wait for readiness;
// it ends early with ctx's error, or with ErrExited once exited closes.
func waitBetweenProbes(ctx context.Context, d time.Duration, exited <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-exited:
		return ErrExited
	}
}
