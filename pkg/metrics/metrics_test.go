package metrics

import (
	"errors"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

func status(releases ...string) control.Status {
	s := control.Status{}
	for _, id := range releases {
		s.Releases = append(s.Releases, control.Release{ReleaseID: id, Revision: id, State: "active",
			Processes: []control.Process{{ID: "web", State: "running", RSSBytes: 1 << 20}}})
	}
	s.Services = []control.Unit{{ID: "jobs", ReleaseID: releases[0], Process: control.Process{ID: "jobs", State: "running", Restarts: 2}}}
	return s
}

// Every metric the daemon exports is listed in docs/metrics.md.
func TestDocsListEveryMetric(t *testing.T) {
	m := New(Options{Version: "test", Status: func() control.Status { return status("v1") }, AccessLogDropped: func() uint64 { return 0 }})
	m.Observe("v1", "127.0.0.1:1").RequestDone(httptest.NewRequest("GET", "/", nil), proxy.Result{Status: 200})
	m.Command(control.CmdDeploy, time.Second, nil)
	m.healthWait.Observe(1)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fams {
		name := f.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue // client_golang's own, documented as a group
		}
		n++
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not list %s", name)
		}
	}
	if n < 15 {
		t.Errorf("only %d rollbridge metrics gathered", n)
	}
}

// Requests are counted by status class on the release's children; a
// second backend of the release shares them; a scrape deletes the series
// of a release the status no longer lists, but not those of one observed
// after the status was taken.
func TestRequestsCountedAndPruned(t *testing.T) {
	listed := []string{"v1", "v2"}
	m := New(Options{Status: func() control.Status { return status(listed...) }})
	req := httptest.NewRequest("GET", "/", nil)
	for _, st := range []int{200, 204, 404, 502, 101} {
		m.Observe("v1", "a").RequestDone(req, proxy.Result{Status: st, Duration: time.Millisecond})
	}
	m.Observe("v2", "b").RequestDone(req, proxy.Result{Status: 200})
	m.UpstreamError("v1")
	m.UpstreamError("") // the hold's: not a release's
	for class, want := range map[string]float64{"2xx": 2, "4xx": 1, "5xx": 1, "1xx": 1, "3xx": 0} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues("v1", class)); got != want {
			t.Errorf("v1 %s: got %v, want %v", class, got, want)
		}
	}
	if got := testutil.ToFloat64(m.upstreamErrors.WithLabelValues("v1")); got != 1 {
		t.Errorf("upstream errors: got %v, want 1", got)
	}
	listed = []string{"v2"} // v1 pruned
	if _, err := m.Registry().Gather(); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.requests); n != 4 {
		t.Errorf("%d request series after v1 was pruned, want v2's 4", n)
	}
	// v3 observed after the mark, before the status lists it: kept.
	mark := m.mark()
	m.Observe("v3", "c")
	m.prune(mark, map[string]bool{"v2": true})
	if n := testutil.CollectAndCount(m.requests); n != 8 {
		t.Errorf("%d request series, want v2's and v3's 8", n)
	}
}

func TestCommandOutcomes(t *testing.T) {
	m := New(Options{Status: func() control.Status { return status("v1") }})
	m.Command(control.CmdDeploy, time.Second, nil)
	m.Command(control.CmdDeploy, time.Second, errors.New("unhealthy"))
	m.Command(control.CmdRollback, time.Second, nil)
	for _, c := range []struct {
		cmd, res string
		want     float64
	}{{"deploy", "success", 1}, {"deploy", "failure", 1}, {"rollback", "success", 1}, {"rollback", "failure", 0}} {
		if got := testutil.ToFloat64(m.commands.WithLabelValues(c.cmd, c.res)); got != c.want {
			t.Errorf("%s %s: got %v, want %v", c.cmd, c.res, got, c.want)
		}
	}
}
