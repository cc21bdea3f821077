package daemon

import (
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// TestUnitSettingsIgnoredIsLoggedOnce: a daemon that runs processes with
// the exec runtime says, once, that the config's systemd unit settings
// are not applied — at start, not again for each re-read config.
func TestUnitSettingsIgnoredIsLoggedOnce(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, `{systemd: {NoNewPrivileges: true}}`)
	var out lockedBuffer
	runDaemon(t, Options{Config: cfg, Stdout: &out, Runner: process.ExecRunner{}})
	testutil.Eventually(t, "the warning in the daemon's output", func() bool {
		return strings.Contains(out.String(), string(events.UnitSettingsIgnored))
	})
	if !strings.Contains(out.String(), `"processes":["web"]`) {
		t.Errorf("the warning does not name the process:\n%s", out.String())
	}

	log := events.New(16)
	defer log.Close()
	d := &daemon{log: log, execRuntime: true}
	d.warnUnitSettings(testConfig(t, dir, `{}`)) // nothing to ignore: no warning, and none used up
	d.warnUnitSettings(cfg)
	d.warnUnitSettings(cfg)
	n := 0
	for _, e := range log.Recent(16) {
		if e.Message == events.UnitSettingsIgnored {
			n++
		}
	}
	if n != 1 {
		t.Errorf("got %d %q events, want 1", n, events.UnitSettingsIgnored)
	}

	d = &daemon{log: log, execRuntime: false}
	d.warnUnitSettings(cfg)
	if got := len(log.Recent(16)); got != 1 {
		t.Errorf("the systemd runtime warned too: %d events", got)
	}
}
