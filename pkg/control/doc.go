// Package control is the wire protocol between rollbridgectl and rollbridged:
// newline-delimited JSON over a Unix socket, one request line from the
// client, zero or more progress lines from the daemon, then one final line.
//
//	-> {"command":"deploy","releasePath":"/srv/app/releases/42","releaseId":"v42"}
//	<- {"status":"progress","message":"starting release v42"}
//	<- {"status":"success","activeReleaseId":"v42","previousReleaseId":"v41"}
//
// Errors are {"status":"error","error":"...","code":"..."}; the code lets a
// client branch (ErrDeployInProgress, ErrNotFound, ...) without parsing text.
// The server answers bad input with an error line and keeps serving.
// docs/protocol.md is the user-facing description.
package control
