// Command node-standin stands in for the Node original's daemon
// (rollbridge 0.1.7) in the migration lane (scripts/migration-lane.sh),
// where no node runtime is installed. It does what the switch-over meets
// of the original and nothing more: it holds the proxy port and forwards
// to the release's web process, runs the processes detached in process
// groups of their own, answers status and shutdown on its control socket,
// writes its state file in the original's format (status without orphans,
// events, persistedAt; through <statePath>.<pid>.<n>.tmp and a rename),
// and on SIGTERM or shutdown drains in-flight requests, stops its
// processes and deletes the state file, as the original's clean shutdown
// does. Killed with SIGKILL, it leaves the processes and the file behind.
//
// Usage:
//
//	node-standin -app shop -port 4500 -control /run/x.sock -state /var/lib/x.json \
//	  -release-path /srv/shop/1 -release-id r1 \
//	  -web '4600=exec app --port 4600' -service 'beacon=7330=exec app --port 7330' \
//	  -service 'jobs=0=exec jobs'      # port 0: a service without a port
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type child struct {
	id   string
	port int
	cmd  *exec.Cmd
	at   time.Time
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var services listFlag
	app := flag.String("app", "shop", "application")
	host := flag.String("host", "127.0.0.1", "proxy host")
	port := flag.Int("port", 4500, "proxy port")
	control := flag.String("control", "", "control socket path")
	statePath := flag.String("state", "", "state file path")
	releasePath := flag.String("release-path", "", "release path")
	releaseID := flag.String("release-id", "r1", "release id")
	web := flag.String("web", "", "PORT=COMMAND of the proxied process")
	flag.Var(&services, "service", "ID=PORT=COMMAND of a service (repeatable)")
	flag.Parse()

	start := func(id, spec string) *child {
		p, cmdline, ok := strings.Cut(spec, "=")
		n, err := strconv.Atoi(p)
		if !ok || err != nil {
			log.Fatalf("bad process spec %q", spec)
		}
		cmd := exec.Command("/bin/sh", "-c", cmdline)
		cmd.Dir = *releasePath
		cmd.Env = append(os.Environ(), "PORT="+p, "ROLLBRIDGE_PORT="+p, "ROLLBRIDGE_RELEASE_ID="+*releaseID)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // detached, as the original spawns them
		if err := cmd.Start(); err != nil {
			log.Fatalf("start %s: %v", id, err)
		}
		return &child{id: id, port: n, cmd: cmd, at: time.Now()}
	}
	var svc []*child
	for _, s := range services {
		id, rest, _ := strings.Cut(s, "=")
		svc = append(svc, start(id, rest))
	}
	w := start("web", *web)
	all := append(append([]*child{}, svc...), w)
	for _, c := range all {
		if c.port != 0 {
			waitPort(c.port)
		}
	}

	snapshot := func() map[string]any {
		proc := func(c *child) map[string]any {
			return map[string]any{"children": []any{}, "command": c.cmd.Args[2], "cwd": *releasePath, "id": c.id, "logs": []any{},
				"memoryRestarts": 0, "pid": c.cmd.Process.Pid, "restarts": 0, "startedAt": iso(c.at), "state": "running",
				"uptimeMs": time.Since(c.at).Milliseconds()}
		}
		units := []any{}
		for _, c := range svc {
			units = append(units, map[string]any{"id": c.id, "process": proc(c)})
		}
		ports := map[string]any{"web": w.port}
		for _, c := range svc {
			if c.port != 0 {
				ports[c.id] = c.port
			}
		}
		return map[string]any{
			"activeReleaseId": *releaseID, "application": *app, "control": map[string]any{"path": *control}, "orphans": []any{},
			"proxy": map[string]any{"host": *host, "port": *port, "upstreamHost": "127.0.0.1"},
			"releases": []any{map[string]any{"activatedAt": iso(w.at), "connectionCount": 0, "connections": map[string]any{"http": 0, "websocket": 0},
				"ports": ports, "processes": []any{proc(w)}, "releaseId": *releaseID, "releasePath": *releasePath, "revision": *releaseID, "state": "active"}},
			"services": units, "singletons": []any{},
		}
	}
	var mu sync.Mutex // one state write at a time, as the original's queue
	n := 0
	persist := func() {
		mu.Lock()
		defer mu.Unlock()
		s := snapshot()
		delete(s, "orphans")
		s["events"] = []any{}
		s["persistedAt"] = iso(time.Now())
		b, _ := json.MarshalIndent(s, "", "  ")
		n++
		tmp := fmt.Sprintf("%s.%d.%d.tmp", *statePath, os.Getpid(), n)
		if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
			log.Printf("state persist failed: %v", err)
			return
		}
		if err := os.Rename(tmp, *statePath); err != nil {
			log.Printf("state persist failed: %v", err)
		}
	}

	target, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", w.port))
	srv := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	go func() { _ = srv.Serve(ln) }()

	stop := make(chan struct{})
	var once sync.Once
	shutdown := func() { once.Do(func() { close(stop) }) }
	_ = os.Remove(*control)
	cl, err := net.Listen("unix", *control)
	if err != nil {
		log.Fatalf("control socket: %v", err)
	}
	go func() {
		for {
			conn, err := cl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					var req struct{ Command string }
					_ = json.Unmarshal(sc.Bytes(), &req)
					resp := map[string]any{"status": "success"}
					switch req.Command {
					case "status":
						for k, v := range snapshot() {
							resp[k] = v
						}
					case "shutdown":
						resp["message"] = "shutdown"
						defer shutdown()
					default:
						resp = map[string]any{"error": "Unknown command: " + req.Command, "status": "error"}
					}
					b, _ := json.Marshal(resp)
					_, _ = conn.Write(append(b, '\n'))
				}
			}()
		}
	}()

	persist()
	tick := time.NewTicker(time.Second) // the original writes every 5 s
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	log.Printf("node-standin %s: proxy on %s:%d, release %s", *app, *host, *port, *releaseID)
loop:
	for {
		select {
		case <-tick.C:
			persist()
		case <-sig:
			break loop
		case <-stop:
			break loop
		}
	}
	_ = cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx) // drain: in-flight requests finish
	for _, c := range all {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	}
	for _, c := range all {
		_ = c.cmd.Wait()
	}
	mu.Lock()
	if err := os.Remove(*statePath); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Printf("remove state file: %v", err)
	}
	_ = os.Remove(*control)
	log.Printf("node-standin %s: stopped", *app)
}

func iso(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// waitPort polls until something accepts on the port (the original's
// health check, without the path).
func waitPort(port int) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Fatalf("nothing listens on port %d", port)
}
