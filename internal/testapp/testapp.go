// Package testapp is the web app the tests deploy: a test binary re-executes
// itself with RB_TESTAPP=1 and calls Main. It serves on $PORT and is driven
// by environment variables, so each test can shape a release's behaviour.
//
//	GET /        "<release>\n" (ROLLBRIDGE_RELEASE_ID)
//	GET /ping    200, or RB_APP_HEALTH as the status
//	GET /slow    sleeps ?ms= milliseconds, then answers like /
//	GET /ws      WebSocket echo, replies "<release>:<message>"
//	GET /env     the process's ROLLBRIDGE_*, NOTIFY_SOCKET and WATCHDOG_* variables as KEY=VALUE lines
//	GET /headers the X-Forwarded-* request headers as "Name: value" lines, sorted
//
// RB_APP_EXIT=N exits with N right away; RB_APP_BOOT_MS delays listening.
package testapp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// Active reports whether this process should act as the app.
func Active() bool { return os.Getenv("RB_TESTAPP") == "1" }

// Main runs the app and exits.
func Main() {
	if code := os.Getenv("RB_APP_EXIT"); code != "" {
		n, _ := strconv.Atoi(code)
		fmt.Fprintln(os.Stderr, "exiting on purpose with", n)
		os.Exit(n)
	}
	if ms, _ := strconv.Atoi(os.Getenv("RB_APP_BOOT_MS")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	release := os.Getenv("ROLLBRIDGE_RELEASE_ID")
	health, _ := strconv.Atoi(os.Getenv("RB_APP_HEALTH"))
	if health == 0 {
		health = http.StatusOK
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, release) })
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(health) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintln(w, release)
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		var lines []string
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, "ROLLBRIDGE_") || strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") {
				lines = append(lines, kv)
			}
		}
		sort.Strings(lines)
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		var lines []string
		for k, vv := range r.Header {
			if strings.HasPrefix(k, "X-Forwarded-") {
				for _, v := range vv {
					lines = append(lines, k+": "+v)
				}
			}
		}
		sort.Strings(lines)
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(release+":"), msg...)); err != nil {
				return
			}
		}
	})
	host := os.Getenv("RB_APP_HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, os.Getenv("PORT")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", ln.Addr(), "release", release)
	srv := &http.Server{Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // in-flight requests finish first
	}()
	_ = srv.Serve(ln) // returns as soon as Shutdown begins
	<-drained
	os.Exit(0)
}
