// Package remote carries the control protocol to a daemon on another host
// through the system's ssh client, the way DOCKER_HOST=ssh:// does:
// rollbridgectl --host ssh://user@host:port runs `rollbridgectl dial-stdio`
// on the remote host and speaks the protocol over that command's stdin and
// stdout. ssh does the authentication, host-key checking and encryption,
// with the user's own ssh configuration; rollbridge adds no listener of its
// own.
//
// Nothing from a request reaches ssh's command line: the remote command is
// fixed, and only the user's own --host URL (checked strictly by Parse), the
// remote config or socket path and the remote binary (both shell-quoted)
// are put there.
package remote
