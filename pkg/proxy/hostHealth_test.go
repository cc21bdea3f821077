package proxy

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// The host health path is answered by the proxy itself: 503 without a
// release, 200 with one, 503 again while drained — and a drained host goes
// on serving every other request (the traffic a balancer still sends).
func TestHostHealthAnswers(t *testing.T) {
	p, url, _ := newProxy(t)
	p.SetHostHealthPath("/_host/health")
	c := newClient(t)

	if code, body := get(t, c, url+"/_host/health"); code != http.StatusServiceUnavailable || body != "no active release\n" {
		t.Fatalf("no release: got %d %q, want 503 %q", code, body, "no active release\n")
	}
	var appSaw []string
	_, addr := upstream(t, "app", func(w http.ResponseWriter, r *http.Request) {
		appSaw = append(appSaw, r.URL.Path) // one request at a time in this test
		_, _ = w.Write([]byte("app"))
	})
	b := activate(p, "r1", addr)
	if code, body := get(t, c, url+"/_host/health"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("release active: got %d %q, want 200 %q", code, body, "ok\n")
	}
	if !p.HostHealthy() {
		t.Fatal("HostHealthy: got false, want true")
	}

	if !p.SetHostDrained(true) {
		t.Fatal("SetHostDrained(true): got unchanged, want changed")
	}
	if p.SetHostDrained(true) {
		t.Fatal("SetHostDrained(true) twice: got changed, want unchanged")
	}
	if code, body := get(t, c, url+"/_host/health"); code != http.StatusServiceUnavailable || body != "host drained\n" {
		t.Fatalf("drained: got %d %q, want 503 %q", code, body, "host drained\n")
	}
	if code, body := get(t, c, url+"/page"); code != http.StatusOK || body != "app" {
		t.Fatalf("request to a drained host: got %d %q, want 200 %q", code, body, "app")
	}
	p.SetHostDrained(false)
	if code, _ := get(t, c, url+"/_host/health"); code != http.StatusOK {
		t.Fatalf("undrained: got %d, want 200", code)
	}
	if len(appSaw) != 1 || appSaw[0] != "/page" {
		t.Fatalf("the app saw %q, want only /page (health answers never reach it)", appSaw)
	}
	if got := b.Requests(); got != 1 {
		t.Fatalf("requests counted on the backend: got %d, want 1 (health checks are not traffic)", got)
	}

	// Turned off, the path is the app's like any other.
	p.SetHostHealthPath("")
	if code, body := get(t, c, url+"/_host/health"); code != http.StatusOK || body != "app" {
		t.Fatalf("path off: got %d %q, want the app's 200 %q", code, body, "app")
	}
}

// While the proxy holds (a daemon starting, a crashed process restarting),
// the health answer is 503 at once: it is never held, so the balancer
// learns at its next check that this host has nothing to serve with now.
func TestHostHealthNeverHeld(t *testing.T) {
	p, url, _ := newProxy(t)
	p.SetHostHealthPath("/_host/health")
	p.Hold(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := <-getAsync(ctx, newClient(t), url+"/_host/health")
	if a.err != nil || a.code != http.StatusServiceUnavailable {
		t.Fatalf("health while holding: got %d %v, want 503 at once", a.code, a.err)
	}
	if p.Held() != 0 {
		t.Fatalf("held: got %d, want 0", p.Held())
	}
}

// The time of a drain is the first drain's: draining again, or a restore
// from a state file meanwhile, keeps it; an undrain forgets it, and a
// restore gives back the time the state file kept.
func TestHostDrainedSince(t *testing.T) {
	p, _, _ := newProxy(t)
	if _, ok := p.HostDrainedSince(); ok {
		t.Fatal("HostDrainedSince before any drain: got drained")
	}
	p.SetHostDrained(true)
	first, ok := p.HostDrainedSince()
	if !ok || first.IsZero() {
		t.Fatalf("HostDrainedSince after a drain: got %v %v, want a time", first, ok)
	}
	p.SetHostDrained(true)
	if p.RestoreHostDrained(first.Add(-time.Hour)) {
		t.Fatal("RestoreHostDrained while drained: got changed, want unchanged")
	}
	if again, _ := p.HostDrainedSince(); !again.Equal(first) {
		t.Fatalf("drained again: since %v, want the first drain's %v", again, first)
	}
	p.SetHostDrained(false)
	if _, ok := p.HostDrainedSince(); ok || p.HostDrained() {
		t.Fatal("after the undrain: still drained")
	}
	kept := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if !p.RestoreHostDrained(kept) {
		t.Fatal("RestoreHostDrained: got unchanged, want changed")
	}
	if since, ok := p.HostDrainedSince(); !ok || !since.Equal(kept) || !p.HostDrained() {
		t.Fatalf("restored: got %v %v, want drained since %v", since, ok, kept)
	}
}
