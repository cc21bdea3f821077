package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// env holds the processes under test.
type env struct {
	o       options
	work    string
	appURL  string // the app, direct
	rbURL   string // through rollbridged
	ngURL   string // through nginx ("" when not available)
	rb      *daemon
	app     *exec.Cmd
	nginx   *exec.Cmd
	cleanup []func()
}

type daemon struct {
	cmd    *exec.Cmd
	client *control.Client
	cfg    string
	dir    string
	n      int // releases deployed
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (e *env) start(name string, env []string, args ...string) (*exec.Cmd, error) {
	log, err := os.Create(filepath.Join(e.work, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	e.cleanup = append(e.cleanup, func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		log.Close()
	})
	return cmd, nil
}

func (e *env) close() {
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
	_ = os.RemoveAll(e.work)
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer: %w", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startDaemon runs rollbridged with a config whose processes are given as
// Jsonnet (the web process is always the demo app; webExtra, an object or
// "{}", is merged into it).
func (e *env) startDaemon(name, webExtra, extra string, retention int) (*daemon, string, error) {
	return e.startDaemonWith(name, "{}", webExtra, extra, retention)
}

// startDaemonWith is startDaemon with top, a Jsonnet object merged into
// the config's top level (e.g. {runtime: 'systemd'}).
func (e *env) startDaemonWith(name, top, webExtra, extra string, retention int) (*daemon, string, error) {
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	port := freePort()
	app := filepath.Join(e.o.bin, "demo-app")
	absApp, _ := filepath.Abs(app)
	cfg := filepath.Join(dir, "rollbridge.jsonnet")
	src := fmt.Sprintf(`{application: %q, control: {path: %q}, releaseRetention: {keep: %d},
  proxy: {host: '127.0.0.1', port: %d, drainTimeoutMs: 30000},
  processes: [{id: 'web', policy: 'proxied', command: 'exec %s --port {{port}}', port: {from: 15000, to: 15999}, health: {path: '/ping', intervalMs: 250}} + %s] + %s} + %s`,
		name, filepath.Join(dir, "c.sock"), retention, port, absApp, webExtra, extra, top)
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		return nil, "", err
	}
	rbd, _ := filepath.Abs(filepath.Join(e.o.bin, "rollbridged"))
	cmd, err := e.start(name, nil, rbd, "-c", cfg)
	if err != nil {
		return nil, "", err
	}
	d := &daemon{cmd: cmd, client: &control.Client{Path: filepath.Join(dir, "c.sock")}, cfg: cfg, dir: dir}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := d.client.Status(context.Background()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("%s did not answer on its control socket (see %s.log)", name, filepath.Join(e.work, name))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d, fmt.Sprintf("http://127.0.0.1:%d", port), nil
}

// deploy makes a new release directory and deploys it, passing progress on.
func (d *daemon) deploy(ctx context.Context, progress func(control.Progress)) (string, error) {
	d.n++
	id := fmt.Sprintf("r%d", d.n)
	rel := filepath.Join(d.dir, "releases", id)
	if err := os.MkdirAll(rel, 0o755); err != nil {
		return "", err
	}
	_, err := d.client.Deploy(ctx, control.DeployRequest{ReleasePath: rel, ReleaseID: id}, progress)
	return id, err
}

// setup starts the direct app, rollbridged with one release, and nginx.
func setup(o options) (*env, error) {
	work, err := os.MkdirTemp("", "rbbench")
	if err != nil {
		return nil, err
	}
	e := &env{o: o, work: work}
	appPort := freePort()
	app, _ := filepath.Abs(filepath.Join(o.bin, "demo-app"))
	if e.app, err = e.start("app", []string{"ROLLBRIDGE_RELEASE_ID=direct"}, app, "--port", strconv.Itoa(appPort)); err != nil {
		return e, err
	}
	e.appURL = fmt.Sprintf("http://127.0.0.1:%d", appPort)
	if err := waitHTTP(e.appURL + "/ping"); err != nil {
		return e, err
	}
	if e.rb, e.rbURL, err = e.startDaemon("rb", "{}", "[]", 10); err != nil {
		return e, err
	}
	if _, err := e.rb.deploy(context.Background(), nil); err != nil {
		return e, err
	}
	if !o.noNginx {
		if err := e.startNginx(appPort); err != nil {
			fmt.Fprintln(os.Stderr, "bench: nginx comparison skipped:", err)
		}
	}
	return e, nil
}

func (e *env) startNginx(appPort int) error {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/sbin/nginx"} {
			if _, err2 := os.Stat(p); err2 == nil {
				bin, err = p, nil
			}
		}
		if err != nil {
			return fmt.Errorf("nginx is not installed (apt-get install nginx)")
		}
	}
	port := freePort()
	dir := filepath.Join(e.work, "nginx")
	_ = os.MkdirAll(dir, 0o755)
	// One worker, as in the reference numbers; keep-alive upstreams;
	// buffers large enough that a 1 MiB answer never goes to a temp file.
	conf := fmt.Sprintf(`worker_processes 1;
error_log %[1]s/error.log warn;
pid %[1]s/nginx.pid;
worker_rlimit_nofile 19000;
events { worker_connections 9000; }
http {
  access_log off;
  client_body_temp_path %[1]s/body; proxy_temp_path %[1]s/proxy; fastcgi_temp_path %[1]s/fcgi; uwsgi_temp_path %[1]s/uwsgi; scgi_temp_path %[1]s/scgi;
  upstream app { server 127.0.0.1:%[2]d; keepalive 256; }
  server {
    listen 127.0.0.1:%[3]d;
    client_max_body_size 64m;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffers 16 64k;
      proxy_max_temp_file_size 0;
      proxy_request_buffering off;
    }
  }
}
`, dir, appPort, port)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	if e.nginx, err = e.start("nginx", nil, bin, "-c", confPath, "-g", "daemon off;"); err != nil {
		return err
	}
	e.ngURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	return waitHTTP(e.ngURL + "/ping")
}

// cpuTime is the user+system CPU time of every process in pid's group.
func cpuTime(pid int) time.Duration {
	var ticks uint64
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		p, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + en.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+2:]))
		if len(f) < 13 || (f[2] != strconv.Itoa(pid) && p != pid) {
			continue
		}
		u, _ := strconv.ParseUint(f[11], 10, 64)
		s, _ := strconv.ParseUint(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

// rssKiB is VmRSS of pid.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n
		}
	}
	return 0
}
