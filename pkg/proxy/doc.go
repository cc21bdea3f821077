// Package proxy is the stable HTTP/WebSocket front door of rollbridged.
//
// A Proxy forwards to the active release's Backend, which sits behind an
// atomic pointer so the request path takes no locks. Plain HTTP is routed
// per request: a keep-alive client moves to a new release on its next
// request. An upgraded (WebSocket) connection stays on the backend that
// accepted it for its whole life, and when either of its sides ends, both
// are closed. Each Backend counts its in-flight requests and open upgraded
// connections; a deploy swaps the new backend in, drains the old one with
// Backend.Drain, and force-closes what is left with
// Backend.CloseConnections.
//
// The pointer a request loads is its route: the active backend and, while
// a canary runs (SetCanary, Promote), a second backend with its share of
// new clients, kept on their side by a cookie or a hash of their address
// (canary.go). Without a canary the request reads nothing more than
// before.
//
// A request takes one of three paths: body-less requests (nearly all) are
// written straight to a per-backend keep-alive pool, requests with a body
// go through httputil.ReverseProxy, and protocol switches through the
// proxy's own handshake and copy. The app cannot tell them apart: one
// header policy (header.go) decides the request target, the Host and every
// header it is sent.
//
// The proxy answers itself only when it cannot forward: 503 "No active
// release" when no backend is active, 502 when the upstream refuses or
// breaks the connection, 504 when connecting times out. While the proxy
// holds (Proxy.Hold, as the daemon does while it starts), a request that
// finds no backend waits for one instead, bounded in time and number.
// With Options.CrashHold, a request that failed on the active backend in
// a way the app cannot have acted on (its process went down) waits the
// same way for the backend to serve again and is sent once more
// (crashhold.go).
package proxy
