package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/bench/load"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// DeployReport is the deploys-under-load section.
type DeployReport struct {
	Deploys  int         `json:"deploys"`
	Steady   load.Result `json:"steady"`
	During   load.Result `json:"during"`
	Phases   []Phase     `json:"phasesMs"`
	Failures int64       `json:"failedRequests"`
}

// Phase is one deploy's timeline, in milliseconds from "deploy starting".
type Phase struct {
	Release    string  `json:"release"`
	WebStarted float64 `json:"webStarted"`
	Healthy    float64 `json:"healthy"`
	Switched   float64 `json:"switched"`
	Returned   float64 `json:"returned"`
	OldStopped float64 `json:"oldStopped"` // -1 if not seen
}

func deployUnderLoad(ctx context.Context, e *env) (*DeployReport, error) {
	url := e.rbURL + "/bytes?n=100"
	rep := &DeployReport{Deploys: e.o.deploys}
	rep.Steady = load.Run(ctx, load.Config{URL: url, Concurrency: 64, Duration: 5 * time.Second, KeepAlive: true})

	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rep.During = load.Run(lctx, load.Config{URL: url, Concurrency: 64, Duration: time.Hour, KeepAlive: true})
	}()
	time.Sleep(500 * time.Millisecond) // load running before the first deploy
	type marks struct {
		start, web, healthy, switched, returned time.Time
		id                                      string
	}
	var all []marks
	for i := 0; i < e.o.deploys; i++ {
		var m marks
		m.start = time.Now()
		id, err := e.rb.deploy(ctx, func(p control.Progress) {
			now := time.Now()
			switch p.Message {
			case "process started":
				if p.Data["id"] == "web" {
					m.web = now
				}
			case "release healthy":
				m.healthy = now
			case "traffic switched":
				m.switched = now
			}
		})
		m.returned = time.Now()
		m.id = id
		if err != nil {
			stop()
			wg.Wait()
			return rep, fmt.Errorf("deploy %d: %w", i+1, err)
		}
		all = append(all, m)
	}
	time.Sleep(500 * time.Millisecond) // load after the last deploy too
	stop()
	wg.Wait()
	rep.Failures = rep.During.Failures

	// When did each retired release stop? From the daemon's events.
	stopped := map[string]time.Time{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ev, err := e.rb.client.Events(ctx, control.EventsRequest{}); err == nil {
			for _, x := range ev.Events {
				if x.Message == "release stopped" {
					if id, ok := x.Data["releaseId"].(string); ok {
						stopped[id] = x.At.Time
					}
				}
			}
		}
		if len(all) < 2 || !stopped[all[len(all)-2].id].IsZero() || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	ms := func(from, to time.Time) float64 {
		if to.IsZero() {
			return -1
		}
		return float64(to.Sub(from).Microseconds()) / 1000
	}
	for i, m := range all {
		p := Phase{Release: m.id, WebStarted: ms(m.start, m.web), Healthy: ms(m.start, m.healthy),
			Switched: ms(m.start, m.switched), Returned: ms(m.start, m.returned), OldStopped: -1}
		if i > 0 {
			p.OldStopped = ms(m.start, stopped[all[i-1].id])
		}
		rep.Phases = append(rep.Phases, p)
	}
	if rep.Failures > 0 {
		b, _ := json.Marshal(rep.During.FirstFail)
		fmt.Fprintf(os.Stderr, "bench: %d failed requests during deploys: %s\n", rep.Failures, b)
	}
	return rep, nil
}
