package systemd

import (
	"os"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages. When NOTIFY_SOCKET is unset (not run
// by systemd) every method does nothing. Methods are safe for concurrent use.
type Notifier struct {
	enabled bool
}

// NewNotifier checks NOTIFY_SOCKET once.
func NewNotifier() *Notifier {
	return &Notifier{enabled: os.Getenv("NOTIFY_SOCKET") != ""}
}

// Enabled reports whether messages go anywhere.
func (n *Notifier) Enabled() bool { return n.enabled }

func (n *Notifier) send(state string) {
	if !n.enabled {
		return
	}
	_, _ = daemon.SdNotify(false, state) // a lost notification must not stop the daemon
}

// Ready tells systemd the daemon serves, with a status line.
func (n *Notifier) Ready(status string) { n.send("READY=1\nSTATUS=" + status) }

// Status updates the one-line status shown by systemctl status.
func (n *Notifier) Status(status string) { n.send("STATUS=" + status) }

// Reloading marks the start of a config reload; Ready ends it.
func (n *Notifier) Reloading() {
	// MONOTONIC_USEC lets Type=notify-reload units (systemd >= 253) match
	// the reload; older managers ignore it.
	n.send("RELOADING=1\n" + daemon.SdNotifyMonotonicUsec())
}

// Stopping tells systemd the daemon is shutting down.
func (n *Notifier) Stopping() { n.send("STOPPING=1") }

// ExtendTimeout asks systemd to wait d longer for the start (or stop) to
// finish; a restore that redeploys a release can take a health-check window.
func (n *Notifier) ExtendTimeout(d time.Duration) {
	n.send("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10))
}

// Watchdog pings the service watchdog.
func (n *Notifier) Watchdog() { n.send("WATCHDOG=1") }

// WatchdogInterval is how often to ping (half of WATCHDOG_USEC), or 0 when
// the watchdog is off for this process.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}
