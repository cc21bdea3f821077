package proxy

import (
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"strings"
)

// ShareScale is the unit of a canary's share: parts of ShareScale (10000,
// so 1 is 0.01 %).
const ShareScale = 10000

// Canary says how a canary takes its share of the traffic; see SetCanary.
type Canary struct {
	// Share is the part of new clients sent to the canary, in parts of
	// ShareScale (2500 is 25 %).
	Share int
	// Cookie names the cookie that keeps a client on its side: the proxy
	// sets it on the answer to a client that came without one (or with one
	// naming a release that is not routed to any more), its value the id of
	// the side's release. "" keeps no cookie: the side is a hash of the
	// client's address (ClientAddr, so Options.TrustedProxies count) and
	// the canary's release id.
	Cookie string
}

// split is a running canary: its backend and how it is chosen.
type split struct {
	backend *Backend
	Canary
}

// route is one immutable state of the routing: the backend that takes the
// traffic, and while a canary runs, the canary and its share. Every request
// loads the Proxy's route pointer once; without a canary that load and
// main are all it reads.
type route struct {
	main   *Backend
	canary *Backend // nil: no canary
	share  uint32   // parts of ShareScale of new clients for canary
	cookie string   // the cookie's name; "" = hash the client's address
	// The Set-Cookie values that put a client on each side.
	mainCookie, canaryCookie string
	// salt is the canary's release id, hashed: each canary takes its own
	// slice of the clients, not always the same unlucky ones.
	salt uint64
}

// routes reports whether rt sends requests to b; a nil route routes none.
func (rt *route) routes(b *Backend) bool {
	return rt != nil && (rt.main == b || rt.canary == b)
}

// pick chooses the side for req while a canary runs, and the Set-Cookie
// value to send when the client is new to this canary.
func (rt *route) pick(p *Proxy, req *http.Request) (*Backend, string) {
	if rt.cookie == "" {
		a := p.ClientAddr(req).As16()
		h := fnv.New64a()
		_, _ = h.Write(a[:]) // a hash never fails
		if uint32((h.Sum64()^rt.salt)%ShareScale) < rt.share {
			return rt.canary, ""
		}
		return rt.main, ""
	}
	// Only the canary's path reads cookies: requests without a canary
	// never pay for it.
	for _, line := range req.Header["Cookie"] {
		for line != "" {
			var pair string
			pair, line, _ = strings.Cut(line, ";")
			name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || name != rt.cookie {
				continue
			}
			switch value {
			case rt.main.releaseID:
				return rt.main, ""
			case rt.canary.releaseID:
				return rt.canary, ""
			}
		}
	}
	// New, or its cookie names a release no longer routed to (an earlier
	// canary): it gets a side now, kept from its next request on.
	if rand.Uint32N(ShareScale) < rt.share {
		return rt.canary, rt.canaryCookie
	}
	return rt.main, rt.mainCookie
}

// setMain makes b the backend that takes the traffic (nil: none), keeping
// a running canary, and returns the previous one. paused (with b nil)
// says the active backend is only taken out while its process restarts
// (Pause): it stays the active release's for the crash hold (crashhold.go).
func (p *Proxy) setMain(b *Backend, paused bool) (prev *Backend) {
	p.routeMu.Lock()
	defer p.routeMu.Unlock()
	if rt := p.route.Load(); rt != nil {
		prev = rt.main
	}
	active := b
	if paused {
		active = p.epoch.Load().active
	}
	p.storeRouteLocked(b)
	p.nextEpochLocked(active)
	return prev
}

// storeRouteLocked stores the route for main and the running split.
// Without a main backend there is no route: a canary alone takes nothing.
// Callers store the next epoch after it (nextEpochLocked).
func (p *Proxy) storeRouteLocked(main *Backend) {
	if main == nil {
		p.route.Store(nil)
		return
	}
	rt := &route{main: main}
	if s := p.split; s != nil && s.backend != main {
		rt.canary, rt.share, rt.cookie = s.backend, uint32(s.Share), s.Cookie
		if s.Cookie != "" {
			rt.mainCookie = canaryCookie(s.Cookie, main.releaseID)
			rt.canaryCookie = canaryCookie(s.Cookie, s.backend.releaseID)
		}
		h := fnv.New64a()
		_, _ = h.Write([]byte(s.backend.releaseID))
		rt.salt = h.Sum64()
	}
	p.route.Store(rt)
}

// canaryCookie is the Set-Cookie value that keeps a client on release id.
// The value is no secret: a client that edits it only picks its side.
func canaryCookie(name, id string) string {
	return (&http.Cookie{Name: name, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}).String()
}

// ErrCanaryShare is returned by SetCanary for a share outside 0..ShareScale.
var ErrCanaryShare = errors.New("canary share out of range")

// SetCanary sends c.Share of the new clients to b, next to the active
// backend; a client keeps its side while b stays the canary (see
// Canary.Cookie for how). Calling it again for the same b changes the
// share or the cookie: clients that hold a cookie keep their side, and so
// do hashed clients when the share grows (only those above the new share
// move back when it shrinks). b == nil ends the canary: all traffic goes
// to the active backend (an abort). It returns the previous canary. Like
// Swap, it returns once every request that starts later is routed by the
// new split; requests already routed keep their backend.
func (p *Proxy) SetCanary(b *Backend, c Canary) (prev *Backend, err error) {
	if c.Share < 0 || c.Share > ShareScale {
		return nil, ErrCanaryShare
	}
	p.routeMu.Lock()
	defer p.routeMu.Unlock()
	if p.split != nil {
		prev = p.split.backend
	}
	if b == nil {
		p.split = nil
	} else {
		p.bindBackend(b)
		p.split = &split{backend: b, Canary: c}
	}
	var main *Backend
	if rt := p.route.Load(); rt != nil {
		main = rt.main
	}
	p.storeRouteLocked(main)
	p.nextEpochLocked(p.epoch.Load().active) // the active release stays
	return prev, nil
}

// CanaryBackend returns the running canary's backend and its split, or nil.
func (p *Proxy) CanaryBackend() (*Backend, Canary) {
	p.routeMu.Lock()
	defer p.routeMu.Unlock()
	if p.split == nil {
		return nil, Canary{}
	}
	return p.split.backend, p.split.Canary
}

// Promote makes the canary the active backend, in one step: every request
// that starts after it returns goes to the canary. It returns the backend
// that was active (to drain), or nil when no canary runs.
func (p *Proxy) Promote() (prev *Backend) {
	p.routeMu.Lock()
	if p.split == nil {
		p.routeMu.Unlock()
		return nil
	}
	next := p.split.backend
	p.split = nil
	if rt := p.route.Load(); rt != nil {
		prev = rt.main
	}
	p.storeRouteLocked(next)
	p.nextEpochLocked(next)
	p.routeMu.Unlock()
	p.wake() // after routeMu: Pause takes gateMu, then routeMu
	return prev
}
