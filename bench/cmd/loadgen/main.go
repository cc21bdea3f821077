// Command loadgen sends HTTP load and reports throughput, latency
// percentiles and every failure (see bench/load).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/rollbridge/rollbridge-go/bench/load"
)

func main() {
	var cfg load.Config
	var upload int
	var asJSON bool
	flag.StringVar(&cfg.URL, "url", "", "target URL (required)")
	flag.IntVar(&cfg.Concurrency, "c", 1, "concurrent workers")
	flag.DurationVar(&cfg.Duration, "d", 5*time.Second, "duration (ignored with -n)")
	flag.Int64Var(&cfg.Requests, "n", 0, "total requests (0: run for -d)")
	flag.BoolVar(&cfg.KeepAlive, "keepalive", true, "reuse connections (false: one connection per request)")
	flag.IntVar(&upload, "upload", 0, "POST a body of this many bytes instead of GET")
	flag.BoolVar(&asJSON, "json", false, "print the result as JSON")
	flag.Parse()
	if cfg.URL == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required")
		os.Exit(2)
	}
	if upload > 0 {
		cfg.Body = make([]byte, upload)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res := load.Run(ctx, cfg)
	if asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(res) // stdout closed: nothing to report to
	} else {
		fmt.Println(res)
		for _, f := range res.FirstFail {
			fmt.Printf("  failure at %s: status %d %s\n", f.At.Format(time.RFC3339Nano), f.Status, f.Error)
		}
	}
	if res.Failures > 0 {
		os.Exit(1)
	}
}
