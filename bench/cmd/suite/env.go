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
	o      options
	work   string
	appURL string // the app, direct
	rbURL  string // through rollbridged
	ngURL  string // through nginx ("" when not available)
	rb     *daemon
	app    *exec.Cmd
	// appPort is the direct app's, nginx's upstream.
	appPort int
	nginx   *exec.Cmd
	// pin is where the proxy sections run what (nil: not pinned).
	pin *pinning
	// prb is the rollbridged the proxy section measures: rb, or with
	// pinning a daemon of its own on the proxy's CPU (rb's releases are
	// deployed under load by other sections and must not share that CPU).
	prb     *daemon
	prbURL  string
	cleanup []func()
}

type daemon struct {
	cmd    *exec.Cmd
	client *control.Client
	cfg    string
	dir    string
	allocs string // its allocation counter socket (ROLLBRIDGE_ALLOCSTATS_SOCKET)
	n      int    // releases deployed
	// startedAt and answeredAt are when the suite started it and when its
	// control socket first answered status.
	startedAt, answeredAt time.Time
}

// daemonSpec is a rollbridged to start: the config's processes as Jsonnet
// (the web process is always the demo app; webExtra, an object, is merged
// into it; extra is an array of more processes; top is merged into the
// config's top level, e.g. {runtime: 'systemd'}), and the CPUs it runs on
// (nil: unpinned).
type daemonSpec struct {
	name, top, webExtra, extra string
	retention                  int
	cpus                       []int
	env                        []string // more of rollbridged's environment
	rollbridged                string   // the binary, when not the one in -bin (-ab-bin)
	web                        string   // the web process's command, when not the demo app
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startOn starts a process of the suite's in a process group of its own,
// on cpus (nil: unpinned), its output in WORK/name.log; the cleanup stops
// the group.
func (e *env) startOn(name string, env []string, cpus []int, args ...string) (*exec.Cmd, error) {
	log, err := os.Create(filepath.Join(e.work, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startOn(cmd, cpus); err != nil {
		log.Close()
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
// Jsonnet (see daemonSpec).
func (e *env) startDaemon(name, webExtra, extra string, retention int) (*daemon, string, error) {
	return e.startDaemonWith(name, "{}", webExtra, extra, retention)
}

// startDaemonWith is startDaemon with top (see daemonSpec).
func (e *env) startDaemonWith(name, top, webExtra, extra string, retention int) (*daemon, string, error) {
	return e.startDaemonSpec(daemonSpec{name: name, top: top, webExtra: webExtra, extra: extra, retention: retention})
}

// startDaemonSpec starts the daemon s describes and waits until its control
// socket answers status (polled every millisecond: the startup section
// times it).
func (e *env) startDaemonSpec(s daemonSpec) (*daemon, string, error) {
	name, top, webExtra, extra, retention := s.name, s.top, s.webExtra, s.extra, s.retention
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	port := freePort()
	app := filepath.Join(e.o.bin, "demo-app")
	absApp, _ := filepath.Abs(app)
	cfg := filepath.Join(dir, "rollbridge.jsonnet")
	web := "exec " + absApp + " --port {{port}}"
	if s.web != "" {
		web = s.web
	}
	src := fmt.Sprintf(`{application: %q, control: {path: %q}, releaseRetention: {keep: %d},
  proxy: {host: '127.0.0.1', port: %d, drainTimeoutMs: 30000},
  processes: [{id: 'web', policy: 'proxied', command: %q, port: {from: 15000, to: 15999}, health: {path: '/ping', intervalMs: 250}} + %s] + %s} + %s`,
		name, filepath.Join(dir, "c.sock"), retention, port, web, webExtra, extra, top)
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		return nil, "", err
	}
	rbd, _ := filepath.Abs(filepath.Join(e.o.bin, "rollbridged"))
	if s.rollbridged != "" {
		rbd, _ = filepath.Abs(s.rollbridged)
	}
	allocs := filepath.Join(dir, "allocs.sock")
	started := time.Now()
	cmd, err := e.startOn(name, append([]string{"ROLLBRIDGE_ALLOCSTATS_SOCKET=" + allocs}, s.env...), s.cpus, rbd, "-c", cfg)
	if err != nil {
		return nil, "", err
	}
	d := &daemon{cmd: cmd, client: &control.Client{Path: filepath.Join(dir, "c.sock")}, cfg: cfg, dir: dir, allocs: allocs, startedAt: started}
	deadline := started.Add(15 * time.Second)
	for {
		if _, err := d.client.Status(context.Background()); err == nil {
			d.answeredAt = time.Now()
			break
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("%s did not answer on its control socket (see %s.log)", name, filepath.Join(e.work, name))
		}
		time.Sleep(time.Millisecond)
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

// webPids are the pids of the web processes d runs.
func (d *daemon) webPids(ctx context.Context) ([]int, error) {
	st, err := d.client.Status(ctx)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, r := range st.Releases {
		for _, p := range r.Processes {
			if p.ID == "web" && p.Pid > 0 {
				pids = append(pids, p.Pid)
			}
		}
	}
	return pids, nil
}

// appsToLoadCPU moves the apps of a pinned daemon (which inherited the
// proxy's CPU from it) to the load generator's CPU.
func (e *env) appsToLoadCPU(ctx context.Context, d *daemon) error {
	pids, err := d.webPids(ctx)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("no web process to pin")
	}
	for _, pid := range pids {
		if err := pinGroup(pid, e.pin.load); err != nil { // each managed process leads its own group
			return err
		}
	}
	return nil
}

// startProxyDaemon starts a daemon with one release for a proxy
// measurement: on cpus, its app moved to the load CPU.
func (e *env) startProxyDaemon(ctx context.Context, name string, top string, cpus []int, env ...string) (*daemon, string, error) {
	return e.startProxyDaemonSpec(ctx, daemonSpec{name: name, top: top, cpus: cpus, env: env})
}

// startProxyDaemonSpec is startProxyDaemon for s (its webExtra, extra and
// retention are set here).
func (e *env) startProxyDaemonSpec(ctx context.Context, s daemonSpec) (*daemon, string, error) {
	name, cpus := s.name, s.cpus
	s.webExtra, s.extra, s.retention = "{}", "[]", 2
	d, url, err := e.startDaemonSpec(s)
	if err != nil {
		return nil, "", err
	}
	if _, err := d.deploy(ctx, nil); err != nil {
		return nil, "", fmt.Errorf("%s: deploy: %w", name, err)
	}
	if cpus != nil {
		if err := e.appsToLoadCPU(ctx, d); err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
	}
	return d, url, nil
}

// proxyCPUs and loadCPUs are where the proxy under test and the app run
// (nil when not pinned).
func (e *env) proxyCPUs() []int {
	if e.pin == nil {
		return nil
	}
	return e.pin.proxy
}

func (e *env) loadCPUs() []int {
	if e.pin == nil {
		return nil
	}
	return e.pin.load
}

// pinLoad moves the load generator (this process) to its CPU for a proxy
// section and returns what undoes it.
func (e *env) pinLoad() func() {
	if e.pin == nil {
		return func() {}
	}
	restore, err := pinSelf(e.pin.load)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: pinning the load generator:", err)
		return func() {}
	}
	return restore
}

// setup starts the direct app, rollbridged with one release (and with
// pinning a second one on the proxy's CPU), and nginx.
func setup(o options) (*env, error) {
	work, err := os.MkdirTemp("", "rbbench")
	if err != nil {
		return nil, err
	}
	e := &env{o: o, work: work}
	if o.pin && o.wantsPinning() {
		if e.pin, err = newPinning(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: not pinning:", err)
		}
	}
	appPort := freePort()
	app, _ := filepath.Abs(filepath.Join(o.bin, "demo-app"))
	if e.app, err = e.startOn("app", []string{"ROLLBRIDGE_RELEASE_ID=direct"}, e.loadCPUs(), app, "--port", strconv.Itoa(appPort)); err != nil {
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
	e.prb, e.prbURL = e.rb, e.rbURL
	if e.pin != nil {
		if e.prb, e.prbURL, err = e.startProxyDaemon(context.Background(), "rb-pinned", "{}", e.pin.proxy); err != nil {
			return e, err
		}
	}
	e.appPort = appPort
	if !o.noNginx {
		if e.nginx, e.ngURL, err = e.startNginx("nginx", 1, e.proxyCPUs()); err != nil {
			fmt.Fprintln(os.Stderr, "bench: nginx comparison skipped:", err)
		}
	}
	return e, nil
}

// nginxBin is nginx's path (Debian's is in /usr/sbin, often not on PATH).
func nginxBin() (string, error) {
	if bin, err := exec.LookPath("nginx"); err == nil {
		return bin, nil
	}
	for _, p := range []string{"/usr/sbin/nginx", "/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("nginx is not installed (apt-get install nginx)")
}

// startNginx starts nginx in front of the direct app with workers worker
// processes (0: worker_processes auto) on cpus.
func (e *env) startNginx(name string, workers int, cpus []int) (*exec.Cmd, string, error) {
	return e.startNginxTo(name, workers, cpus, e.appPort)
}

// startNginxTo is startNginx in front of the app on appPort.
func (e *env) startNginxTo(name string, workers int, cpus []int, appPort int) (*exec.Cmd, string, error) {
	bin, err := nginxBin()
	if err != nil {
		return nil, "", err
	}
	port := freePort()
	dir := filepath.Join(e.work, name)
	_ = os.MkdirAll(dir, 0o755)
	wp := "auto"
	if workers > 0 {
		wp = strconv.Itoa(workers)
	}
	// One worker, as in the reference numbers (auto in the cores
	// section); keep-alive upstreams; buffers large enough that a 1 MiB
	// answer never goes to a temp file. Keep-alive connections, the
	// clients' and the app's, last as long as rollbridged's do: nginx's
	// default ends each after 1000 requests, which would make it dial
	// and accept again where rollbridged does not.
	conf := fmt.Sprintf(`worker_processes %[4]s;
error_log %[1]s/error.log warn;
pid %[1]s/nginx.pid;
worker_rlimit_nofile 19000;
events { worker_connections 9000; }
http {
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 600s;
  client_body_temp_path %[1]s/body; proxy_temp_path %[1]s/proxy; fastcgi_temp_path %[1]s/fcgi; uwsgi_temp_path %[1]s/uwsgi; scgi_temp_path %[1]s/scgi;
  upstream app { server 127.0.0.1:%[2]d; keepalive 256; keepalive_requests 1000000000; keepalive_timeout 600s; }
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
`, dir, appPort, port, wp)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	cmd, err := e.startOn(name, nil, cpus, bin, "-c", confPath, "-g", "daemon off;")
	if err != nil {
		return nil, "", err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	return cmd, url, waitHTTP(url + "/ping")
}

// cpuTime is the user+system CPU time of every process in pid's group.
func cpuTime(pid int) time.Duration {
	u, s := cpuTimes(pid)
	return u + s
}

// cpuTimes is the user and the system CPU time of every process in pid's
// group.
func cpuTimes(pid int) (user, sys time.Duration) {
	var u, s uint64
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
		pu, _ := strconv.ParseUint(f[11], 10, 64)
		ps, _ := strconv.ParseUint(f[12], 10, 64)
		u += pu
		s += ps
	}
	tick := time.Second / 100 // USER_HZ is 100 on Linux
	return time.Duration(u) * tick, time.Duration(s) * tick
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
