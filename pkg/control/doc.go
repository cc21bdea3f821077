// Package control is the wire protocol between rollbridgectl and rollbridged:
// newline-delimited JSON over a Unix socket, the Node original's protocol.
// A client sends one request line and reads one answer line back:
//
//	-> {"command":"deploy","releasePath":"/srv/app/releases/42","releaseId":"v42"}
//	<- {"status":"success","activeReleaseId":"v42","previousReleaseId":"v41"}
//
// A deploy or rollback that asks for it with "progress":true also gets
// progress lines before the answer (rollbridgectl asks); nothing else does,
// because the original's clients take the first line as the answer.
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
// Errors are {"error":"...","status":"error","code":"..."}: the original's
// line plus a code, which lets a client branch (ErrDeployInProgress,
// ErrNotFound, ...) without parsing text. The server answers bad input with
// an error line and keeps serving; fields a command does not read are
// ignored, as the original ignores them. docs/protocol.md is the
// user-facing description; golden_test.go pins the bytes it documents.
package control
