package main

import (
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/bench/load"
)

// TestFloorTable: "× nginx" is taken run by run against nginx's run of the
// same repeat (not median over median), and user and system are each the
// median of the runs' own parts.
func TestFloorTable(t *testing.T) {
	runs := func(rps ...float64) []load.Result {
		var r []load.Result
		for _, v := range rps {
			r = append(r, load.Result{RPS: v})
		}
		return r
	}
	c := &CompareReport{
		Scenario: "GET 100 B c64 keep-alive",
		Order:    []string{"nginx, 1 worker", "x"},
		Targets: map[string]*TargetStats{
			"nginx, 1 worker": {Runs: runs(100, 200, 300), CPUPerReq: []float64{10, 40, 20}, CPUUserPerReq: []float64{2, 10, 5}},
			// Per repeat: 12/10, 40/40, 30/20 = 1.2, 1.0, 1.5; median 1.2.
			// Medians over medians would give 30/20 = 1.5.
			"x": {Runs: runs(110, 210, 310), CPUPerReq: []float64{12, 40, 30}, CPUUserPerReq: []float64{1, 30, 4},
				AllocBytesPerReq: []float64{900, 100, 300}},
		},
	}
	out := c.floorTable()
	for _, want := range []string{
		"| nginx, 1 worker | 200 [100–300] | 20.0 [10.0–40.0] | 5.0 | 15.0 | 1.00 [1.00–1.00] | – | 0 |",
		// system per run: 11, 10, 26 → median 11 (median(total) − median(user) would be 26).
		// allocated: the median of the runs' bytes per request.
		"| x | 210 [110–310] | 30.0 [12.0–40.0] | 4.0 | 11.0 | 1.20 [1.00–1.50] | 300 | 0 |",
		"3 interleaved runs",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("floor table lacks %q:\n%s", want, out)
		}
	}
}
