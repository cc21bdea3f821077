// Command kaload keeps N keep-alive HTTP/1.1 connections to the demo app
// through the proxy and sends GET / and POST /upload (a body of random
// size, whose length the app answers) on each, back to back, checking
// every answer. The real-systemd lane runs it across daemon restarts.
//
// Requests are written and read by hand on each connection: nothing
// retries or reconnects behind its back, so a request lost because its
// connection closed counts as failed (Go's http.Transport would resend
// a GET silently). After a failure the connection is dialled again
// (redials).
//
// It writes its counts as one JSON object to -status every 200 ms (and
// at exit). While the file named by -pause exists it sends nothing, so
// the lane can read settled counts. SIGTERM ends it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type counts struct {
	open, sent, ok, failed, redials, gets, posts, closes atomic.Int64
	mu                                                   sync.Mutex
	failures                                             []string // the first ten
}

func (c *counts) fail(msg string) {
	c.failed.Add(1)
	c.mu.Lock()
	if len(c.failures) < 10 {
		c.failures = append(c.failures, time.Now().Format("15:04:05.000000")+" "+msg)
	}
	c.mu.Unlock()
}

type report struct {
	Pid      int      `json:"pid"`
	Open     int64    `json:"open"`
	Sent     int64    `json:"sent"`
	OK       int64    `json:"ok"`
	Failed   int64    `json:"failed"`
	Redials  int64    `json:"redials"`
	Gets     int64    `json:"gets"`
	Posts    int64    `json:"posts"`
	Closes   int64    `json:"closes"` // answers with Connection: close
	Failures []string `json:"failures,omitempty"`
}

func (c *counts) report() report {
	c.mu.Lock()
	f := append([]string(nil), c.failures...)
	c.mu.Unlock()
	return report{Pid: os.Getpid(), Open: c.open.Load(), Sent: c.sent.Load(), OK: c.ok.Load(), Failed: c.failed.Load(),
		Redials: c.redials.Load(), Gets: c.gets.Load(), Posts: c.posts.Load(), Closes: c.closes.Load(), Failures: f}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "proxy address")
	n := flag.Int("n", 8, "keep-alive connections")
	every := flag.Duration("every", 5*time.Millisecond, "pause between two requests of one connection")
	status := flag.String("status", "/tmp/kaload.json", "status file")
	pause := flag.String("pause", "/tmp/kaload.pause", "while this file exists, nothing is sent")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	c := &counts{}
	var wg sync.WaitGroup
	for i := range *n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(ctx, *addr, i, *every, *pause, c)
		}()
	}
	write := func() {
		b, _ := json.Marshal(c.report())
		tmp := *status + ".tmp"
		if os.WriteFile(tmp, b, 0o644) == nil {
			_ = os.Rename(tmp, *status)
		}
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			write()
		}
	}
	wg.Wait()
	write()
}

// run is one connection's loop.
func run(ctx context.Context, addr string, i int, every time.Duration, pause string, c *counts) {
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			_ = conn.Close()
			c.open.Add(-1)
		}
	}()
	for n := 0; ctx.Err() == nil; n++ {
		if _, err := os.Stat(pause); err == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if conn == nil {
			var err error
			if conn, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr); err != nil {
				c.fail(fmt.Sprintf("conn %d: dial: %v", i, err))
				conn = nil
				time.Sleep(100 * time.Millisecond)
				continue
			}
			c.open.Add(1)
			br = bufio.NewReader(conn)
		}
		var err error
		if n%2 == 0 {
			c.gets.Add(1)
			err = get(conn, br, c)
		} else {
			c.posts.Add(1)
			err = post(conn, br, c, 1+rand.IntN(64<<10))
		}
		if errors.Is(err, errClose) {
			c.ok.Add(1)
			_ = conn.Close()
			c.open.Add(-1)
			conn = nil
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.fail(fmt.Sprintf("conn %d, request %d: %v", i, n, err))
			_ = conn.Close()
			c.open.Add(-1)
			conn = nil
			c.redials.Add(1)
			continue
		}
		c.ok.Add(1)
		time.Sleep(every)
	}
}

func get(conn net.Conn, br *bufio.Reader, c *counts) error {
	body, err := roundTrip(conn, br, c, "GET / HTTP/1.1\r\nHost: kaload\r\n\r\n", nil)
	if err != nil && !errors.Is(err, errClose) {
		return fmt.Errorf("GET /: %w", err)
	}
	if !strings.HasPrefix(body, "hello from release ") {
		return fmt.Errorf("GET /: body %q", body)
	}
	return err
}

func post(conn net.Conn, br *bufio.Reader, c *counts, size int) error {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: kaload\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", size)
	body, err := roundTrip(conn, br, c, head, payload)
	if err != nil && !errors.Is(err, errClose) {
		return fmt.Errorf("POST /upload (%d bytes): %w", size, err)
	}
	if strings.TrimSpace(body) != strconv.Itoa(size) {
		return fmt.Errorf("POST /upload (%d bytes): the app counted %q", size, body)
	}
	return err
}

// errClose: the answer was right, and said Connection: close.
var errClose = errors.New("connection: close")

func roundTrip(conn net.Conn, br *bufio.Reader, c *counts, head string, body []byte) (string, error) {
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	c.sent.Add(1)
	if _, err := conn.Write(append([]byte(head), body...)); err != nil {
		return "", err
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %.80q", res.StatusCode, b)
	}
	if res.Close {
		c.closes.Add(1) // answered, but the connection ends: dial again
		return string(b), errClose
	}
	return string(b), nil
}
