// Command wsstream holds N WebSockets open to an echo endpoint (the demo
// app's /ws) and streams numbered messages on each, checking that every
// echo comes back exactly once and in order. The real-systemd lane runs it
// across daemon restarts, SIGKILLs and watchdog kills.
//
// It writes its counts as one JSON object to -status every 200 ms (and at
// exit): open sockets, messages sent and received, and the violations
// found. While the file named by -pause exists it sends nothing, so the
// lane can wait for every echo (outstanding 0). SIGTERM ends it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

type counts struct {
	open, opened, closed, sent, received, violations atomic.Int64
	mu                                               sync.Mutex
	firstViolation                                   string
}

func (c *counts) violate(msg string) {
	c.violations.Add(1)
	c.mu.Lock()
	if c.firstViolation == "" {
		c.firstViolation = msg
	}
	c.mu.Unlock()
}

type report struct {
	Pid            int    `json:"pid"`
	Open           int64  `json:"open"`
	Opened         int64  `json:"opened"`
	Closed         int64  `json:"closed"`
	Sent           int64  `json:"sent"`
	Received       int64  `json:"received"`
	Outstanding    int64  `json:"outstanding"`
	Violations     int64  `json:"violations"`
	FirstViolation string `json:"firstViolation,omitempty"`
}

func (c *counts) report() report {
	c.mu.Lock()
	first := c.firstViolation
	c.mu.Unlock()
	s, r := c.sent.Load(), c.received.Load()
	return report{Pid: os.Getpid(), Open: c.open.Load(), Opened: c.opened.Load(), Closed: c.closed.Load(), Sent: s, Received: r,
		Outstanding: s - r, Violations: c.violations.Load(), FirstViolation: first}
}

func main() {
	url := flag.String("url", "ws://127.0.0.1:18080/ws", "echo endpoint")
	n := flag.Int("n", 200, "sockets")
	every := flag.Duration("every", 50*time.Millisecond, "pause between two messages of one socket")
	status := flag.String("status", "/tmp/wsstream.json", "status file")
	pause := flag.String("pause", "/tmp/wsstream.pause", "while this file exists, nothing is sent")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	c := &counts{}
	var wg sync.WaitGroup
	for i := range *n {
		conn, _, err := websocket.Dial(ctx, *url, nil)
		if err != nil {
			fmt.Fprintf(os.Stderr, "wsstream: dial %d: %v\n", i, err)
			os.Exit(1)
		}
		conn.SetReadLimit(1 << 20)
		c.open.Add(1)
		c.opened.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(ctx, conn, i, *every, *pause, c)
		}()
	}
	write := func() {
		b, _ := json.Marshal(c.report())
		tmp := *status + ".tmp"
		if os.WriteFile(tmp, append(b, '\n'), 0o644) == nil {
			_ = os.Rename(tmp, *status)
		}
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for ctx.Err() == nil {
		write()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	wg.Wait()
	write()
}

// run streams on one socket until ctx ends or the socket closes. Message
// k of socket i is "i:k"; its echo must be the next one expected.
func run(ctx context.Context, conn *websocket.Conn, i int, every time.Duration, pause string, c *counts) {
	defer c.open.Add(-1)
	defer conn.CloseNow()
	done := make(chan struct{})
	go func() {
		defer close(done)
		next := 0
		for {
			_, msg, err := conn.Read(context.Background())
			if err != nil {
				if ctx.Err() == nil {
					c.closed.Add(1) // closed by the other side
				}
				return
			}
			want := strconv.Itoa(i) + ":" + strconv.Itoa(next)
			if string(msg) != want {
				c.violate(fmt.Sprintf("socket %d: got %q, want %q", i, msg, want))
				if k, err := strconv.Atoi(strings.TrimPrefix(string(msg), strconv.Itoa(i)+":")); err == nil {
					next = k // resynchronise, so one fault counts once
				}
			}
			next++
			c.received.Add(1)
		}
	}()
	for k := 0; ; {
		select {
		case <-ctx.Done():
			_ = conn.Close(websocket.StatusNormalClosure, "done")
			<-done
			return
		case <-done:
			return
		case <-time.After(every):
		}
		if _, err := os.Stat(pause); err == nil {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := conn.Write(wctx, websocket.MessageText, []byte(strconv.Itoa(i)+":"+strconv.Itoa(k)))
		cancel()
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				<-done
			}
			continue
		}
		c.sent.Add(1)
		k++
	}
}
