package supervisor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// load sends requests through the proxy from a few clients until stop is
// closed, and counts the answers that are not 200 with the body of a
// release.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErr   string
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startLoad(t *testing.T, url string, clients int) *load {
	l := &load{stop: make(chan struct{})}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get(url + "/")
				if err != nil {
					l.fail(err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "v") {
					l.fail(fmt.Sprintf("%d %q", resp.StatusCode, b))
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	t.Cleanup(l.end)
	return l
}

func (l *load) fail(what string) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.firstErr == "" {
		l.firstErr = what
	}
}

func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// TestMemoryLimitReplacesTheProxiedProcess: the proxied process goes over
// its memory limit (below what the app needs, so every instance does, and
// replacements follow one another). Each time a new instance starts on a
// new port, traffic switches to it once healthy and the old one drains and
// stops: a slow-booting app under a client loop loses no request. A
// companion whose env names the web's port is restarted with the new one;
// one that does not is left alone. A deploy that comes meanwhile waits for
// the replacement instead of failing.
func TestMemoryLimitReplacesTheProxiedProcess(t *testing.T) {
	src := fmt.Sprintf(`{application: 'test', proxy: {port: 0, drainTimeoutMs: 10000},
	  processes: [
	    {id: 'web', policy: 'proxied', command: %q, port: %s, health: {intervalMs: 20},
	     memory: {limitBytes: 1024, checkIntervalMs: 50}},
	    {id: 'follower', policy: 'companion', command: 'exec sleep 1000', env: {WEB: '{{ports.web}}'}},
	    {id: 'bystander', policy: 'companion', command: 'exec sleep 1000'},
	  ]}`, appCmd(t, "RB_APP_BOOT_MS=200"), portRange())
	h := newHarness(t, src)
	h.deploy("v1")
	pidOf := func(id string) int {
		for _, p := range h.releaseStatus("v1").Processes {
			if p.ID == id && p.Pid != nil {
				return *p.Pid
			}
		}
		return 0
	}
	bystander := pidOf("bystander")
	l := startLoad(t, h.url, 4)
	testutil.Eventually(t, "three memory replacements", func() bool {
		for _, p := range h.releaseStatus("v1").Processes {
			if p.ID == "web" {
				return p.MemoryRestarts >= 3
			}
		}
		return false
	})
	l.end()
	if n := l.failed.Load(); n != 0 || l.ok.Load() == 0 {
		t.Errorf("%d of %d requests failed (first: %s); want none", n, n+l.ok.Load(), l.firstErr)
	}
	rs := h.releaseStatus("v1")
	var web ProcessStatus
	for _, p := range rs.Processes {
		if p.ID == "web" {
			web = p
		}
	}
	if web.LastStartReason == nil || *web.LastStartReason != "memory" || web.LastMemoryRestartAt == nil || web.Port == nil || *web.Port != rs.Ports["web"] {
		t.Errorf("web after replacements: %s", dump(web))
	}
	if pidOf("bystander") != bystander {
		t.Error("the companion that does not name the web's port was restarted")
	}
	replaced := h.events("process replaced")
	if len(replaced) < 3 {
		t.Fatalf("process replaced events: %s", dump(replaced))
	}
	// The follower is restarted after each move with the port web has
	// now (it may move again while we look: wait for a moment they match).
	testutil.Eventually(t, "the follower started with the web's current port", func() bool {
		var webPort, follower int
		for _, p := range h.releaseStatus("v1").Processes {
			switch {
			case p.ID == "web" && p.Port != nil:
				webPort = *p.Port
			case p.ID == "follower" && p.Pid != nil && p.LastStartReason != nil && *p.LastStartReason == "memory":
				follower = *p.Pid
			}
		}
		v, _ := procfs.EnvValue(follower, "WEB")
		return follower != 0 && v == strconv.Itoa(webPort)
	})
	for _, e := range replaced {
		if e.Data["port"] == e.Data["previousPort"] || e.Data["releaseId"] != "v1" {
			t.Errorf("replacement event %v", e.Data)
		}
	}
	// Every replaced instance drains and stops.
	testutil.Eventually(t, "the replaced instances drained", func() bool {
		return len(h.events("process drained")) >= len(replaced)
	})
	// A deploy in the middle of the replacements waits its turn.
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	if _, err := h.sup.Deploy(ctx, DeployRequest{ReleasePath: h.release("v2", nil), ReleaseID: "v2"}, nil); err != nil {
		t.Errorf("deploy during memory replacements: %v", err)
	}
}
