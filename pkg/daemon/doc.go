// Package daemon assembles rollbridged: it opens (or inherits) the proxy
// listener and the control socket, builds the proxy, the supervisor and the
// control server, and runs them until a signal or a shutdown command, then
// takes them down in order.
package daemon
