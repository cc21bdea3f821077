package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// DrainReport is the WebSockets-at-scale section.
type DrainReport struct {
	Sockets        int     `json:"sockets"`
	Requested      int     `json:"requested"`
	LimitNote      string  `json:"limitNote,omitempty"`
	RSSBeforeKiB   int64   `json:"rssBeforeKiB"`
	RSSAfterKiB    int64   `json:"rssAfterKiB"`
	KiBPerSocket   float64 `json:"kibPerSocket"`
	SwitchMs       float64 `json:"deployMs"`
	EchoOK         int     `json:"echoOkAfterDeploy"`
	DrainingWS     int64   `json:"drainingWebSockets"`
	StopAfterClose float64 `json:"stopAfterCloseMs"`
}

func drainAtScale(ctx context.Context, e *env) (*DrainReport, error) {
	rep := &DrainReport{Requested: e.o.sockets}
	n := e.o.sockets
	// rollbridged holds two descriptors per proxied WebSocket (client and
	// upstream); the hard RLIMIT_NOFILE bounds how many it can carry.
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		if max := int(lim.Max-300) / 2; n > max {
			n = max
			rep.LimitNote = fmt.Sprintf("capped at %d: the hard fd limit is %d and rollbridged needs two fds per socket", n, lim.Max)
		}
	}
	rep.Sockets = n
	pid := e.rb.cmd.Process.Pid
	rep.RSSBeforeKiB = rssKiB(pid)
	wsURL := "ws" + strings.TrimPrefix(e.rbURL, "http") + "/ws"
	conns := make([]*websocket.Conn, n)
	var failed atomic.Int64
	parallel(n, 64, func(i int) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(dctx, wsURL, nil)
		if err != nil {
			failed.Add(1)
			return
		}
		conns[i] = c
	})
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	}()
	if f := failed.Load(); f > 0 {
		return rep, fmt.Errorf("%d of %d WebSockets could not be opened", f, n)
	}
	echo := func() int {
		var ok atomic.Int64
		parallel(n, 64, func(i int) {
			ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if conns[i].Write(ectx, websocket.MessageText, []byte("ping")) != nil {
				return
			}
			if _, msg, err := conns[i].Read(ectx); err == nil && strings.HasSuffix(string(msg), "ping") {
				ok.Add(1)
			}
		})
		return int(ok.Load())
	}
	if got := echo(); got != n {
		return rep, fmt.Errorf("only %d of %d sockets echo before the deploy", got, n)
	}
	time.Sleep(time.Second) // let the daemon's heap settle before reading RSS
	rep.RSSAfterKiB = rssKiB(pid)
	rep.KiBPerSocket = float64(rep.RSSAfterKiB-rep.RSSBeforeKiB) / float64(n)

	st, err := e.rb.client.Status(ctx)
	if err != nil {
		return rep, fmt.Errorf("status before the switch: %w", err)
	}
	if st.ActiveReleaseID == nil {
		return rep, fmt.Errorf("no active release before the switch")
	}
	old := *st.ActiveReleaseID
	t0 := time.Now()
	if _, err := e.rb.deploy(ctx, nil); err != nil {
		return rep, err
	}
	rep.SwitchMs = float64(time.Since(t0).Microseconds()) / 1000
	rep.DrainingWS = releaseWS(ctx, e, old)
	rep.EchoOK = echo()
	fmt.Fprintf(os.Stderr, "bench: %d sockets open, %d echo after the deploy, %d counted on the draining release\n", n, rep.EchoOK, rep.DrainingWS)

	t1 := time.Now()
	parallel(n, 64, func(i int) {
		_ = conns[i].Close(websocket.StatusNormalClosure, "") // a failed close handshake still closes
		conns[i] = nil
	})
	deadline := time.Now().Add(60 * time.Second)
	for releaseState(ctx, e, old) != "stopped" {
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("release %s did not stop within 60s after its sockets closed", old)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rep.StopAfterClose = float64(time.Since(t1).Microseconds()) / 1000
	return rep, nil
}

func releaseState(ctx context.Context, e *env, id string) string {
	st, _ := e.rb.client.Status(ctx) // unreachable: no releases, "absent"
	for _, r := range st.Releases {
		if r.ReleaseID == id {
			return r.State
		}
	}
	return "absent"
}

func releaseWS(ctx context.Context, e *env, id string) int64 {
	st, _ := e.rb.client.Status(ctx) // unreachable: no releases, -1
	for _, r := range st.Releases {
		if r.ReleaseID == id {
			return r.Connections.WebSocket
		}
	}
	return -1
}

// parallel runs f(0..n-1) on w workers.
func parallel(n, w int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for k := 0; k < w; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}
