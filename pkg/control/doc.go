// Package control is the wire protocol between rollbridgectl and rollbridged:
// newline-delimited JSON over a Unix socket, one request line from the
// client, zero or more progress lines from the daemon, then one final line.
//
//	-> {"command":"deploy","releasePath":"/srv/app/releases/42","releaseId":"v42"}
//	<- {"status":"progress","message":"starting release v42"}
//	<- {"status":"success","activeReleaseId":"v42","previousReleaseId":"v41"}
//
// The package owns the contract on both ends: a typed request and a typed
// result per command (request.go, response.go), the Handler interface the
// daemon implements (one method per command), the Server that decodes,
// dispatches and encodes, and the Client whose typed methods rollbridgectl
// calls. The types are separate from the daemon's domain types on purpose:
// the daemon maps its values onto them in one place, so nothing outside
// this package can change the bytes on the socket. It imports nothing else
// of rollbridge.
//
// Errors are {"status":"error","error":"...","code":"..."}; the code lets a
// client branch (ErrDeployInProgress, ErrNotFound, ...) without parsing text.
// The server answers bad input with an error line and keeps serving.
// docs/protocol.md is the user-facing description; golden_test.go pins the
// bytes it documents.
package control
