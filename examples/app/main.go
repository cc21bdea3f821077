// Command app is a small web app for Rollbridge demos, tests and benchmarks.
// It uses only the standard library so it builds anywhere Go does.
//
// Usage:
//
//	app [--port N] [--host 127.0.0.1]
//
// The port comes from --port, else $ROLLBRIDGE_PORT (what rollbridged
// injects), else $PORT. The release name comes from $ROLLBRIDGE_RELEASE_ID,
// else $APP_VERSION.
//
// Endpoints:
//
//	GET  /ping          health check: 200 "ok" (status from $APP_HEALTH_STATUS)
//	GET  /              "hello from release <id>"
//	GET  /version       {"release": "<id>", "pid": <pid>}
//	GET  /bytes?n=N     N bytes of body (0 <= N <= 64 MiB)
//	POST /upload        reads the body, answers its size in bytes
//	GET  /events        Server-Sent Events: "data: tick N" every 100ms, ?count= (default 5)
//	GET  /ws            WebSocket echo (text, binary, ping -> pong, close)
//
// Knobs for tests and demos:
//
//	APP_EXIT_CODE=N        exit at once with code N (a release that crashes)
//	APP_BOOT_DELAY_MS=N    wait N ms before listening (a slow boot)
//	APP_HEALTH_STATUS=N    status code /ping answers (503: an unhealthy release)
//	APP_ACCESS_LOG=1       log one stdout line per request
//
// SIGTERM or SIGINT stops accepting connections, waits up to 10s for
// in-flight requests, sends open WebSockets a "going away" close, and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	maxBytesBody     = 64 << 20 // largest /bytes response
	maxEventCount    = 100000   // largest ?count= for /events
	eventInterval    = 100 * time.Millisecond
	shutdownTimeout  = 10 * time.Second
	maxWSPayload     = 16 << 20 // largest WebSocket frame we accept
	wsGUID           = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	wsCloseTimeout   = time.Second
	defaultRelease   = "dev"
	defaultEventsCnt = 5
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil))
}

// options is everything the app reads from its flags and environment.
type options struct {
	host         string
	port         int
	release      string
	bootDelay    time.Duration
	healthStatus int
	accessLog    bool
}

// run is main without the process-wide parts, so tests can drive it:
// cancelling ctx plays the role of SIGTERM, and ready (when not nil) is
// called with the listening address. It returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(addr string)) int {
	if s := getenv("APP_EXIT_CODE"); s != "" {
		code, err := strconv.Atoi(s)
		if err != nil || code < 0 || code > 255 {
			fmt.Fprintf(stderr, "app: APP_EXIT_CODE=%q is not an exit code (0-255)\n", s)
			return 2
		}
		fmt.Fprintf(stderr, "app: exiting with code %d as APP_EXIT_CODE asks\n", code)
		return code
	}
	opts, err := parseOptions(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "app: %v\n", err)
		return 2
	}

	logger := log.New(stdout, "", 0)
	if opts.bootDelay > 0 {
		select {
		case <-time.After(opts.bootDelay):
		case <-ctx.Done():
			logger.Printf("stopped during boot delay (release %s)", opts.release)
			return 0
		}
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(opts.host, strconv.Itoa(opts.port)))
	if err != nil {
		fmt.Fprintf(stderr, "app: %v\n", err)
		return 1
	}
	a := newApp(opts, logger)
	srv := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	logger.Printf("listening on %s release %s pid %d", ln.Addr(), opts.release, os.Getpid())
	if ready != nil {
		ready(ln.Addr().String())
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		fmt.Fprintf(stderr, "app: serve: %v\n", err)
		return 1
	case <-ctx.Done():
	}

	logger.Printf("shutting down release %s", opts.release)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Printf("in-flight requests still running after %s; closing them", shutdownTimeout)
		srv.Close()
	}
	// Hijacked WebSocket connections are not covered by Shutdown.
	a.closeWebSockets()
	logger.Printf("stopped release %s", opts.release)
	return 0
}

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	opts := options{
		release:      firstNonEmpty(getenv("ROLLBRIDGE_RELEASE_ID"), getenv("APP_VERSION"), defaultRelease),
		healthStatus: http.StatusOK,
		accessLog:    getenv("APP_ACCESS_LOG") == "1",
	}
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opts.host, "host", "127.0.0.1", "address to listen on")
	port := fs.String("port", "", "port to listen on (default $ROLLBRIDGE_PORT, then $PORT)")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	portStr := firstNonEmpty(*port, getenv("ROLLBRIDGE_PORT"), getenv("PORT"))
	if portStr == "" {
		return opts, errors.New("no port: pass --port N or set ROLLBRIDGE_PORT or PORT")
	}
	p, err := strconv.Atoi(portStr)
	if err != nil || p < 0 || p > 65535 {
		return opts, fmt.Errorf("port %q is not a TCP port (0-65535)", portStr)
	}
	opts.port = p

	if s := getenv("APP_BOOT_DELAY_MS"); s != "" {
		ms, err := strconv.Atoi(s)
		if err != nil || ms < 0 {
			return opts, fmt.Errorf("APP_BOOT_DELAY_MS=%q is not a non-negative number of milliseconds", s)
		}
		opts.bootDelay = time.Duration(ms) * time.Millisecond
	}
	if s := getenv("APP_HEALTH_STATUS"); s != "" {
		code, err := strconv.Atoi(s)
		if err != nil || code < 200 || code > 599 {
			return opts, fmt.Errorf("APP_HEALTH_STATUS=%q is not an HTTP status code (200-599)", s)
		}
		opts.healthStatus = code
	}
	return opts, nil
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
