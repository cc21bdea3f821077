// Package proxy is the stable HTTP/WebSocket front door of rollbridged.
//
// The active release is a *Backend behind an atomic pointer: the request
// path takes no locks. Plain HTTP is routed per request, so a keep-alive
// client moves to a new release on its next request. An Upgrade (WebSocket)
// is pinned to the backend that accepted it for its whole life, and its two
// sides are always closed together. Each backend counts its in-flight
// requests and open upgraded connections, which is what a deploy drains.
package proxy
