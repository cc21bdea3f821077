package proxy

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// mode is what the proxy does besides forwarding: a pause (requests wait),
// maintenance (requests are answered here), or both. It is replaced whole
// by its writers (under gateMu) and never changed once stored, so a
// request reads it with one atomic load; nil, the usual case, forwards
// every request and costs nothing more.
type mode struct {
	// pause is non-nil while paused: closed when the pause ends. Requests
	// that arrive while it is open wait, each at most until pauseUntil.
	pause      chan struct{}
	pauseUntil time.Time
	maint      *Maintenance
}

// Maintenance is what the proxy answers every request with while in
// maintenance (see Proxy.SetMaintenance): 503 with Retry-After and a page,
// unless the request may bypass it. It must not be changed after it was
// passed to SetMaintenance.
type Maintenance struct {
	// Message is the default page's text and the JSON answer's "message".
	Message string
	// Page, when not empty, is the whole HTML answer instead of the
	// default page (an operator's own page, sent by the client).
	Page string
	// RetryAfter is the Retry-After of the answer, whole seconds; <= 0
	// means DefaultMaintenanceRetryAfter.
	RetryAfter time.Duration
	// Bypass says which requests are forwarded as usual.
	Bypass Bypass
	// Since is when maintenance began (reported, not used by the proxy).
	Since time.Time
}

// Bypass lets the team reach the site during maintenance. A request
// bypasses when any of the set rules matches it; the zero Bypass lets
// nobody through.
type Bypass struct {
	// Header and Cookie name a request header and a cookie whose value
	// must equal Token; they are ignored while Token is empty, so a bare
	// header name never opens the site to whoever guesses it.
	Header, Cookie, Token string
	// Clients are client networks (Proxy.ClientAddr decides who the
	// client is, believing Options.TrustedProxies).
	Clients []netip.Prefix
}

// DefaultMaintenanceRetryAfter is the Retry-After of a maintenance answer
// when Maintenance.RetryAfter is not set.
const DefaultMaintenanceRetryAfter = 60 * time.Second

// DefaultMaintenanceMessage is Maintenance.Message when the operator gives
// none.
const DefaultMaintenanceMessage = "This site is down for maintenance. Please try again soon."

// PauseTraffic makes every request that arrives from now on wait instead
// of being forwarded (the active backend stays as it is), until
// ResumeTraffic or until `until`, whichever comes first; waiting requests
// are then released, gradually (see Options.HoldRelease), to whatever
// backend is active then. The waiting requests count in Held and share
// Options.MaxHeld with the hold; beyond it a request is answered 503 with
// Retry-After. Pausing while paused moves the deadline for everyone
// waiting. Maintenance, when on, still answers first.
func (p *Proxy) PauseTraffic(until time.Time) {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	old := p.mode.Load()
	m := &mode{pause: make(chan struct{}), pauseUntil: until}
	if old != nil {
		m.maint = old.maint
		if old.pause != nil {
			close(old.pause) // its waiters look again and find this pause
		}
	}
	p.mode.Store(m)
}

// ResumeTraffic ends a pause: the requests waiting are released gradually
// and new ones are forwarded. It reports whether the proxy was paused.
func (p *Proxy) ResumeTraffic() bool {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	old := p.mode.Load()
	if old == nil || old.pause == nil {
		return false
	}
	close(old.pause)
	p.storeModeLocked(&mode{maint: old.maint})
	return true
}

// Paused reports whether the proxy pauses traffic, and until when.
func (p *Proxy) Paused() (until time.Time, ok bool) {
	if m := p.mode.Load(); m != nil && m.pause != nil {
		return m.pauseUntil, true
	}
	return time.Time{}, false
}

// SetMaintenance answers every request with m's page from now on (nil
// ends maintenance); requests that m.Bypass lets through are forwarded
// as usual. Requests already forwarded or waiting are not touched, except
// that waiting ones are answered with the page when they are released.
func (p *Proxy) SetMaintenance(m *Maintenance) {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	next := &mode{maint: m}
	if old := p.mode.Load(); old != nil {
		next.pause, next.pauseUntil = old.pause, old.pauseUntil
	}
	p.storeModeLocked(next)
}

// Maintenance returns the maintenance in force, or nil.
func (p *Proxy) Maintenance() *Maintenance {
	if m := p.mode.Load(); m != nil {
		return m.maint
	}
	return nil
}

// storeModeLocked stores m, or nil when m does nothing, so that the
// request path is back to its one load. gateMu is held.
func (p *Proxy) storeModeLocked(m *mode) {
	if m.pause == nil && m.maint == nil {
		m = nil
	}
	p.mode.Store(m)
}

// serveMode is the path of a request while a mode is set.
func (p *Proxy) serveMode(w http.ResponseWriter, r *http.Request, m *mode) {
	waited := false
	for {
		if m.maint != nil && !p.bypasses(r, m.maint) {
			m.maint.answer(w, r)
			return
		}
		if m.pause == nil || !time.Now().Before(m.pauseUntil) {
			break
		}
		if !p.waitPause(w, r, m) {
			return // answered
		}
		waited = true
		if m = p.mode.Load(); m == nil {
			break
		}
		// Still paused: a new pause (a later deadline) replaced this one,
		// or this one's deadline passed and the daemon has not ended it
		// yet. The loop tells which.
	}
	if waited {
		p.release(w, r, nil)
		return
	}
	p.serve(w, r)
}

// waitPause waits while m's pause lasts. It returns false once it has
// answered the request itself: too many wait already, or the client left.
func (p *Proxy) waitPause(w http.ResponseWriter, r *http.Request, m *mode) bool {
	if p.held.Add(1) > p.maxHeld {
		p.held.Add(-1)
		p.giveUp(w, r, "Paused; too many requests waiting", ErrNotHeld)
		return false
	}
	defer p.held.Add(-1)
	timer := time.NewTimer(time.Until(m.pauseUntil))
	defer timer.Stop()
	select {
	case <-m.pause:
	case <-timer.C: // the pause's own timeout releases it
	case <-r.Context().Done():
		w.WriteHeader(statusClientClosed)
		return false
	}
	return true
}

// release forwards a request that waited (a pause, or a hold without a
// backend), once one of Options.HoldRelease slots is free, so that a
// queue released at once reaches the backend a few requests at a time
// rather than all together. The slot is given back as soon as the
// answer's head is written (or the connection is taken over by an
// upgrade), so a long stream does not keep others waiting. giveUp, when
// not nil, ends the wait for a slot (the hold's timeout); the request is
// then answered 503. The request is not counted in Held meanwhile: it has
// been released, and waits only for its turn.
func (p *Proxy) release(w http.ResponseWriter, r *http.Request, giveUp <-chan time.Time) {
	select {
	case p.slots <- struct{}{}:
	case <-giveUp:
		p.giveUp(w, r, "No active release", ErrNotHeld)
		return
	case <-r.Context().Done():
		w.WriteHeader(statusClientClosed)
		return
	}
	pw := &pacedWriter{ResponseWriter: w, slots: p.slots}
	defer pw.free()
	// The crash hold (crashhold.go) waits inside the transport, where w is
	// out of reach: it finds the slot through the context to give it back
	// while it waits. Only released requests pay for this.
	r = r.WithContext(context.WithValue(r.Context(), pacedKey{}, pw))
	if m := p.mode.Load(); m != nil && m.maint != nil && !p.bypasses(r, m.maint) {
		m.maint.answer(pw, r) // maintenance began while it waited
		return
	}
	p.serve(pw, r)
}

// pacedWriter gives its release slot back at the first sign of an answer.
// It keeps the ResponseWriter's optional interfaces that the proxy uses:
// Flush and Hijack directly, the rest through Unwrap.
type pacedWriter struct {
	http.ResponseWriter
	slots chan struct{}
	freed atomic.Bool
}

// pacedKey is the context key of a released request's pacedWriter.
type pacedKey struct{}

// freeSlot gives back the release slot of ctx's request, if it has one.
func freeSlot(ctx context.Context) {
	if pw, ok := ctx.Value(pacedKey{}).(*pacedWriter); ok {
		pw.free()
	}
}

func (pw *pacedWriter) free() {
	if pw.freed.CompareAndSwap(false, true) {
		<-pw.slots
	}
}

func (pw *pacedWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		pw.free()
	}
	pw.ResponseWriter.WriteHeader(code)
}

func (pw *pacedWriter) Write(b []byte) (int, error) {
	pw.free()
	return pw.ResponseWriter.Write(b)
}

func (pw *pacedWriter) Flush() {
	pw.free()
	_ = http.NewResponseController(pw.ResponseWriter).Flush() // as http.Flusher: no error to report
}

func (pw *pacedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	pw.free()
	return http.NewResponseController(pw.ResponseWriter).Hijack()
}

func (pw *pacedWriter) Unwrap() http.ResponseWriter { return pw.ResponseWriter }

// bypasses reports whether r may pass maintenance m.
func (p *Proxy) bypasses(r *http.Request, m *Maintenance) bool {
	b := &m.Bypass
	if b.Token != "" {
		if b.Header != "" {
			for _, v := range r.Header.Values(b.Header) {
				if equalSecret(v, b.Token) {
					return true
				}
			}
		}
		if b.Cookie != "" {
			for _, c := range r.CookiesNamed(b.Cookie) {
				if equalSecret(c.Value, b.Token) {
					return true
				}
			}
		}
	}
	if len(b.Clients) > 0 {
		if a := p.ClientAddr(r); a.IsValid() {
			for _, pfx := range b.Clients {
				if pfx.Contains(a) {
					return true
				}
			}
		}
	}
	return false
}

// equalSecret compares in constant time, so the token cannot be guessed
// a byte at a time from answer times.
func equalSecret(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// answer writes the maintenance answer: JSON for a client that asks for
// JSON rather than HTML, the page otherwise.
func (m *Maintenance) answer(w http.ResponseWriter, r *http.Request) {
	retry := m.RetryAfter
	if retry <= 0 {
		retry = DefaultMaintenanceRetryAfter
	}
	secs := int64((retry + time.Second - 1) / time.Second)
	h := w.Header()
	h.Set("Retry-After", strconv.FormatInt(secs, 10))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	msg := m.Message
	if msg == "" {
		msg = DefaultMaintenanceMessage
	}
	var body []byte
	if wantsJSON(r.Header.Values("Accept")) {
		h.Set("Content-Type", "application/json")
		body, _ = json.Marshal(struct { // strings and a number: cannot fail
			Error      string `json:"error"`
			Message    string `json:"message"`
			RetryAfter int64  `json:"retryAfter"`
		}{"maintenance", msg, secs})
		body = append(body, '\n')
	} else {
		h.Set("Content-Type", "text/html; charset=utf-8")
		if m.Page != "" {
			body = []byte(m.Page)
		} else {
			body = []byte(defaultPage(msg))
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusServiceUnavailable)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body) // the client may be gone; nothing to do about it
	}
}

// wantsJSON reports whether an Accept header asks for JSON before HTML:
// a JSON type (application/json, any +json) is listed and HTML is not, or
// JSON has the higher q-value. A browser's Accept (text/html first, */*
// last) gets the page; an API client's gets JSON.
func wantsJSON(accept []string) bool {
	jsonQ, htmlQ := -1.0, -1.0
	for _, line := range accept {
		for _, item := range strings.Split(line, ",") {
			typ, params, _ := strings.Cut(item, ";")
			typ = strings.ToLower(strings.TrimSpace(typ))
			q := 1.0
			for _, prm := range strings.Split(params, ";") {
				if k, v, ok := strings.Cut(strings.TrimSpace(prm), "="); ok && strings.EqualFold(k, "q") {
					if f, err := strconv.ParseFloat(v, 64); err == nil {
						q = f
					}
				}
			}
			switch {
			case typ == "application/json" || strings.HasSuffix(typ, "+json"):
				jsonQ = max(jsonQ, q)
			case typ == "text/html" || typ == "application/xhtml+xml":
				htmlQ = max(htmlQ, q)
			}
		}
	}
	return jsonQ > 0 && jsonQ > htmlQ
}

// defaultPage is the HTML page for msg.
func defaultPage(msg string) string {
	return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Down for maintenance</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem;color:#222}h1{font-size:1.5rem}</style>
</head><body><h1>Down for maintenance</h1><p>` + html.EscapeString(msg) + `</p></body></html>
`
}

// DrainRequests waits until b has no plain HTTP request in flight; open
// upgraded connections (WebSockets) do not count, since they may last for
// ever. It returns nil then, or an error wrapping ctx.Err() with the
// count left. It is what a pause with drain waits for: with new requests
// held, the count only goes down.
func (b *Backend) DrainRequests(ctx context.Context) error {
	b.drainers.Add(1)
	defer b.drainers.Add(-1)
	for {
		// The channel first, then the count: see Drain.
		b.mu.Lock()
		idle := b.idle
		b.mu.Unlock()
		if b.http.Load() == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("drain release %s: %d requests still in flight: %w", b.releaseID, b.http.Load(), ctx.Err())
		}
	}
}
