// Package takeover holds the host operations rollbridgectl performs
// outside the daemon: making sure a daemon runs (Ensure), clearing what a
// deploy must not meet — a daemon whose proxy no longer matches the config,
// legacy supervisors matched by command line, GNU Screen sessions,
// processes a crashed daemon left behind (Cleanup) — and stopping such
// leftovers on request (Recover).
//
// These run once, from a deploy script or by hand, so they may afford what
// the daemon never does on its periodic paths: reading every process of the
// host (procfs.AllPids). Processes found by pid are stopped with
// internal/pgroup, which never signals a pid that has changed hands.
//
// Results carry JSON tags: they are what rollbridgectl prints with --json.
package takeover
