package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// TestTrafficCommands drives pause, resume and maintenance through the
// real rollbridgectl: the page file is read by the client and sent (one
// over the cap is refused before anything is sent), the watch view shows
// both modes, and off and resume bring the release back.
func TestTrafficCommands(t *testing.T) {
	e := startDaemon(t, `[]`)
	e.mustDeploy("v1")
	dir := t.TempDir()
	page := filepath.Join(dir, "page.html")
	if err := os.WriteFile(page, []byte("<h1>closed for a bit</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.html")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", control.MaxPageBytes+1)), 0o644); err != nil {
		t.Fatal(err)
	}

	if _, stderr, code := e.ctl("maintenance", "on", "--page", big); code != 2 || !strings.Contains(stderr, "larger than 256 KiB") {
		t.Errorf("maintenance on with a big page: exit %d %q, want 2 naming the limit", code, stderr)
	}
	if st := e.status(); st.Proxy.Maintenance != nil {
		t.Errorf("a refused page turned maintenance on: %+v", st.Proxy.Maintenance)
	}
	var res control.TrafficResult
	e.ok(&res, "maintenance", "on", "--page", page, "--message", "soon")
	if res.Maintenance == nil || !res.Maintenance.Page || res.Maintenance.Message != "soon" {
		t.Errorf("maintenance on answered %+v", res)
	}
	if code, body := getBody(t, e.url+"/"); code != 503 || body != "<h1>closed for a bit</h1>" {
		t.Errorf("during maintenance: got %d %q", code, body)
	}
	e.ok(&res, "pause", "--timeout", "2m")
	if !res.Paused || res.PausedUntil.IsZero() {
		t.Errorf("pause answered %+v", res)
	}
	if _, _, code := e.ctl("pause", "--timeout", "0s"); code != 2 {
		t.Errorf("pause --timeout 0s: exit %d, want 2", code)
	}
	out, stderr, code := e.ctl("status", "--watch", "--count", "1")
	if code != 0 || !strings.Contains(out, "PAUSED until") || !strings.Contains(out, "MAINTENANCE") {
		t.Errorf("status --watch: exit %d %s\n%s", code, stderr, out)
	}
	e.ok(&res, "resume")
	e.ok(&res, "maintenance", "off")
	if res.Paused || res.Maintenance != nil {
		t.Errorf("after resume and off: %+v", res)
	}
	if code, body := getBody(t, e.url+"/"); code != 200 || strings.TrimSpace(body) != "v1" {
		t.Errorf("after maintenance off: got %d %q", code, body)
	}
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
