// Package systemd is rollbridge's only door to systemd: socket-activated
// listeners, sd_notify (READY, STATUS, RELOADING, STOPPING, WATCHDOG),
// native journal entries, and D-Bus calls to the system manager. It is the
// only importer of go-systemd and godbus, so the rest of the code stays
// testable without systemd.
package systemd
