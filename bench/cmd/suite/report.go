package main

import (
	"fmt"
	"strings"

	"github.com/rollbridge/rollbridge-go/bench/load"
)

// Table renders the report as Markdown, the way docs/performance.md shows it.
func (r *Report) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n# Rollbridge benchmark, %s\n\nMachine: %s. Load average (1/5/15 min) at start: %s, at the end: %s. Options: %v.\nPinning (proxy, cores, floor and observability sections): %s.\n",
		r.Started.Format("2006-01-02 15:04 UTC"), r.Machine, r.LoadAvg, r.LoadAvgEnd, r.Options, r.Pinning)
	if len(r.SectionLoad) > 0 {
		b.WriteString("Load average (1 min) as each section started:")
		for i, l := range r.SectionLoad {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(&b, "%s %s %s (%s)", sep, l.Section, strings.Fields(l.LoadAvg + " ?")[0], l.At.Format("15:04"))
		}
		b.WriteString(".\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "Note: %s\n", n)
	}
	if len(r.Proxy) > 0 {
		b.WriteString("\n## Proxy overhead (median of runs; req/s min–max in brackets)\n\n")
		b.WriteString("| scenario | direct req/s | rollbridged req/s | nginx req/s | rb/direct | rb/nginx | p50 µs d / rb / ng | p99 µs d / rb / ng | CPU µs/req rb / ng | rb allocs/req | rb B/req | failed |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.Proxy {
			d, rb, ng := s.Targets["direct"], s.Targets["rollbridged"], s.Targets["nginx"]
			rps := func(t *TargetStats) string {
				if t == nil {
					return "–"
				}
				lo, m, hi := t.rps()
				return fmt.Sprintf("%.0f [%.0f–%.0f]", m, lo, hi)
			}
			med := func(t *TargetStats, f func(load.Result) float64) float64 {
				if t == nil {
					return 0
				}
				return t.median(f)
			}
			cpu := func(t *TargetStats) float64 {
				if t == nil {
					return 0
				}
				_, m, _ := stats(t.CPUPerReq)
				return m
			}
			ratio := func(a, c *TargetStats) string {
				if a == nil || c == nil {
					return "–"
				}
				_, x, _ := a.rps()
				_, y, _ := c.rps()
				if y == 0 {
					return "–"
				}
				return fmt.Sprintf("%.2f", x/y)
			}
			p50 := func(x load.Result) float64 { return x.P50 }
			p99 := func(x load.Result) float64 { return x.P99 }
			var failed int64
			for _, t := range s.Targets {
				failed += t.failures()
			}
			allocs, abytes := allocCells(rb)
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | %.1f / %.1f | %s | %s | %d |\n",
				s.Name, rps(d), rps(rb), rps(ng), ratio(rb, d), ratio(rb, ng),
				med(d, p50), med(rb, p50), med(ng, p50), med(d, p99), med(rb, p99), med(ng, p99), cpu(rb), cpu(ng), allocs, abytes, failed)
		}
	}
	if c := r.Cores; c != nil {
		b.WriteString(c.coresTable())
	}
	if c := r.Floor; c != nil {
		b.WriteString(c.floorTable())
	}
	if l := r.Lean; l != nil {
		b.WriteString(l.leanTable())
	}
	if s := r.Startup; s != nil {
		b.WriteString(s.table())
	}
	if d := r.Deploy; d != nil {
		fmt.Fprintf(&b, "\n## Deploys under load (c64 keep-alive, 100 B)\n\n%d deploys, **%d failed requests** out of %d during them.\n\n", d.Deploys, d.Failures, d.During.Requests)
		b.WriteString("| latency | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | req/s |\n|---|---|---|---|---|---|---|\n")
		for _, x := range []struct {
			n string
			r load.Result
		}{{"steady state", d.Steady}, {"during deploys", d.During}} {
			fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", x.n, x.r.P50, x.r.P90, x.r.P99, x.r.P999, x.r.Max, x.r.RPS)
		}
		b.WriteString("\n| deploy phase (ms) | min | median | max |\n|---|---|---|---|\n")
		phase := func(name string, f func(Phase) float64) {
			var v []float64
			for _, p := range d.Phases {
				if x := f(p); x >= 0 {
					v = append(v, x)
				}
			}
			lo, m, hi := stats(v)
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f |\n", name, lo, m, hi)
		}
		phase("start → web process spawned", func(p Phase) float64 { return p.WebStarted })
		phase("start → healthy", func(p Phase) float64 { return p.Healthy })
		phase("healthy → traffic switched", func(p Phase) float64 { return p.Switched - p.Healthy })
		phase("healthy → deploy command returned", func(p Phase) float64 { return p.Returned - p.Healthy })
		phase("start → previous release stopped", func(p Phase) float64 { return p.OldStopped })
	}
	if o := r.Observe; o != nil {
		b.WriteString(o.observeTable())
	}
	if rt := r.Runtime; rt != nil {
		b.WriteString(rt.table())
	}
	if f := r.Footprint; f != nil {
		lo, m, hi := stats(f.StatusMs)
		clo, cm, chi := stats(f.StatusCLIMs)
		fmt.Fprintf(&b, "\n## Footprint\n\n| measure | value |\n|---|---|\n")
		fmt.Fprintf(&b, "| RSS idle (no release) | %.1f MiB |\n", float64(f.RSSIdleKiB)/1024)
		fmt.Fprintf(&b, "| RSS with 1 release | %.1f MiB |\n", float64(f.RSSOneReleaseKiB)/1024)
		fmt.Fprintf(&b, "| RSS under c64 load (peak) | %.1f MiB |\n", float64(f.RSSUnderLoadKiB)/1024)
		fmt.Fprintf(&b, "| daemon CPU per 10k proxied requests (c64 keep-alive, %.0f req/s) | %.0f ms |\n", f.LoadRPS, f.CPUPer10kMs)
		fmt.Fprintf(&b, "| status, 10 releases × 10 processes (%d KiB), control socket | %.2f / %.2f / %.2f ms (min/median/max) |\n", f.StatusBytes/1024, lo, m, hi)
		fmt.Fprintf(&b, "| `rollbridgectl status`, same daemon, whole process | %.1f / %.1f / %.1f ms |\n", clo, cm, chi)
	}
	if id := r.Idle; id != nil && len(id.Cells) > 0 {
		fmt.Fprintf(&b, "\n## Idle cost (no traffic; every managed process with a 1 s memory check; daemon CPU %% of one core over %.0f s, median [min–max])\n\n", id.WindowS)
		b.WriteString("| managed processes |")
		for _, x := range idleExtra {
			fmt.Fprintf(&b, " +%d host processes |", x)
		}
		b.WriteString("\n|---|" + strings.Repeat("---|", len(idleExtra)) + "\n")
		for _, n := range idleManaged {
			fmt.Fprintf(&b, "| %d |", n)
			for _, x := range idleExtra {
				lo, m, hi := stats(id.cpu(n, x))
				fmt.Fprintf(&b, " %.2f [%.2f–%.2f] |", m, lo, hi)
			}
			b.WriteString("\n")
		}
	}
	if d := r.Drain; d != nil {
		fmt.Fprintf(&b, "\n## Drain at scale\n\n| measure | value |\n|---|---|\n")
		fmt.Fprintf(&b, "| open WebSockets on the old release | %d (requested %d) |\n", d.Sockets, d.Requested)
		if d.LimitNote != "" {
			fmt.Fprintf(&b, "| limit | %s |\n", d.LimitNote)
		}
		fmt.Fprintf(&b, "| daemon RSS per open WebSocket | %.1f KiB (%.1f → %.1f MiB) |\n", d.KiBPerSocket, float64(d.RSSBeforeKiB)/1024, float64(d.RSSAfterKiB)/1024)
		fmt.Fprintf(&b, "| deploy (switch) with them open | %.1f ms |\n", d.SwitchMs)
		fmt.Fprintf(&b, "| old sockets still echoing after the switch | %d / %d (counted on the draining release: %d) |\n", d.EchoOK, d.Sockets, d.DrainingWS)
		fmt.Fprintf(&b, "| old release stopped after the last socket closed | %.0f ms |\n", d.StopAfterClose)
	}
	return b.String()
}

// table renders the runtime section: per runtime the median [min–max] of
// each step, and the systemd runtime's extra time over exec's (medians).
func (rt *RuntimeReport) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Deploys per process runtime (demo app, no load; %d deploys each, alternating; ms from the deploy request, median [min–max])\n\n", rt.Deploys)
	if rt.Note != "" {
		fmt.Fprintf(&b, "Note: %s\n\n", rt.Note)
	}
	steps := []struct {
		name string
		f    func(Phase) float64
	}{
		{"start → web spawned", func(p Phase) float64 { return p.WebStarted }},
		{"start → healthy", func(p Phase) float64 { return p.Healthy }},
		{"start → traffic switched", func(p Phase) float64 { return p.Switched }},
	}
	b.WriteString("| step |")
	for _, x := range rt.Runtimes {
		fmt.Fprintf(&b, " %s |", x.Runtime)
	}
	if len(rt.Runtimes) == 2 {
		fmt.Fprintf(&b, " %s − %s (medians) |", rt.Runtimes[1].Runtime, rt.Runtimes[0].Runtime)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(rt.Runtimes)))
	if len(rt.Runtimes) == 2 {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, s := range steps {
		fmt.Fprintf(&b, "| %s |", s.name)
		var meds []float64
		for _, x := range rt.Runtimes {
			var v []float64
			for _, p := range x.Phases {
				if y := s.f(p); y >= 0 {
					v = append(v, y)
				}
			}
			lo, m, hi := stats(v)
			meds = append(meds, m)
			fmt.Fprintf(&b, " %.1f [%.1f–%.1f] |", m, lo, hi)
		}
		if len(meds) == 2 {
			fmt.Fprintf(&b, " %+.1f |", meds[1]-meds[0])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// allocCells are the median allocations and bytes per request of t, or
// dashes when t has none (not rollbridged, or its counters were not read).
func allocCells(t *TargetStats) (allocs, bytes string) {
	if t == nil || len(t.AllocsPerReq) == 0 {
		return "–", "–"
	}
	_, a, _ := stats(t.AllocsPerReq)
	_, by, _ := stats(t.AllocBytesPerReq)
	return fmt.Sprintf("%.1f", a), fmt.Sprintf("%.0f", by)
}
