// Package release holds what one deploy produces before the supervisor wires
// it up: its lifecycle states and the one table of legal moves between them,
// the ports it is given, and the health check that decides whether traffic
// may switch to it. It starts no processes.
package release
