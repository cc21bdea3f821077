package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// upstream starts a real HTTP server answering with its name.
func upstream(t testing.TB, name string, h http.HandlerFunc) (*httptest.Server, string) {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) }
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, strings.TrimPrefix(srv.URL, "http://")
}

// front serves p on a real listener and returns its base URL.
func front(t testing.TB, p *Proxy) string {
	t.Helper()
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return srv.URL
}

func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNoActiveRelease503(t *testing.T) {
	url := front(t, New(Options{}))
	code, body := get(t, http.DefaultClient, url+"/")
	if code != http.StatusServiceUnavailable || body != "No active release\n" {
		t.Errorf("got %d %q", code, body)
	}
}

func TestRefusedUpstream502(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p := New(Options{})
	p.Swap(NewBackend("v1", addr))
	url := front(t, p)
	code, _ := get(t, http.DefaultClient, url+"/")
	if code != http.StatusBadGateway {
		t.Errorf("got %d, want 502", code)
	}
	if p.UpstreamErrors() != 1 {
		t.Errorf("upstream errors = %d", p.UpstreamErrors())
	}
	if h, _ := p.Active().Connections(); h != 0 {
		t.Errorf("in-flight = %d after a failed request", h)
	}
}

func TestHeaders(t *testing.T) {
	var got http.Header
	var gotHost string
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		got, gotHost = r.Header.Clone(), r.Host
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-App", "yes")
	})
	p := New(Options{})
	p.Swap(NewBackend("v1", addr))
	url := front(t, p)
	req, _ := http.NewRequest("GET", url+"/x?y=1", nil)
	req.Host = "shop.example"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotHost != "shop.example" {
		t.Errorf("Host = %q, want the client's", gotHost)
	}
	if xff := got.Get("X-Forwarded-For"); xff != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", xff)
	}
	if got.Get("X-Forwarded-Proto") != "https" || got.Get("X-Forwarded-Host") != "shop.example" {
		t.Errorf("X-Forwarded-Proto %q Host %q", got.Get("X-Forwarded-Proto"), got.Get("X-Forwarded-Host"))
	}
	if got.Get("Proxy-Connection") != "" || got.Get("X-Hop") != "" {
		t.Errorf("hop-by-hop headers forwarded: %v", got)
	}
	if resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-App") != "yes" {
		t.Errorf("response headers: %v", resp.Header)
	}
	// Without a front end's headers, they are filled from this hop.
	req, _ = http.NewRequest("GET", url+"/", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Get("X-Forwarded-Proto") != "http" || got.Get("X-Forwarded-For") != "127.0.0.1" || got.Get("X-Forwarded-Host") == "" {
		t.Errorf("defaults: %v", got)
	}
}

func TestLargeBodiesStream(t *testing.T) {
	const size = 10 << 20
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.CopyN(w, zeroReader{}, size)
	})
	p := New(Options{})
	p.Swap(NewBackend("v1", addr))
	url := front(t, p)
	resp, err := http.Post(url+"/upload", "application/octet-stream", io.LimitReader(rand.Reader, size))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != fmt.Sprint(size) {
		t.Errorf("upload: upstream read %s bytes, want %d", b, size)
	}
	resp, err = http.Get(url + "/download")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != size {
		t.Errorf("download: %d bytes, want %d", n, size)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestServerSentEventsFlushImmediately(t *testing.T) {
	release := make(chan struct{})
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release // the handler is still running when the client reads
		fmt.Fprint(w, "data: second\n\n")
	})
	p := New(Options{})
	p.Swap(NewBackend("v1", addr))
	url := front(t, p)
	resp, err := http.Get(url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	close(release)
	if err != nil || line != "data: first\n" {
		t.Errorf("first event: %q %v", line, err)
	}
}

func TestSwapMovesKeepAliveClients(t *testing.T) {
	_, a := upstream(t, "A", nil)
	_, b := upstream(t, "B", nil)
	p := New(Options{})
	p.Swap(NewBackend("v1", a))
	url := front(t, p)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	if _, body := get(t, client, url); body != "A" {
		t.Fatalf("got %q", body)
	}
	prev := p.Swap(NewBackend("v2", b))
	if prev.ReleaseID() != "v1" {
		t.Errorf("Swap returned %q", prev.ReleaseID())
	}
	// Same keep-alive connection, next request: the new backend.
	if _, body := get(t, client, url); body != "B" {
		t.Errorf("after swap got %q, want B", body)
	}
}

// wsEcho is a WebSocket echo upstream that reports the server-side conns.
func wsEcho(t testing.TB, name string, conns chan<- *websocket.Conn) string {
	_, addr := upstream(t, name, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		if conns != nil {
			conns <- c
		}
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				c.CloseNow()
				return
			}
			if err := c.Write(ctx, typ, append([]byte(name+":"), msg...)); err != nil {
				return
			}
		}
	})
	return addr
}

func dialWS(t testing.TB, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func echo(t testing.TB, c *websocket.Conn, msg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(got)
}

func TestWebSocketPinnedAndDrained(t *testing.T) {
	p := New(Options{})
	a := NewBackend("v1", wsEcho(t, "A", nil))
	p.Swap(a)
	url := front(t, p)
	c := dialWS(t, url)
	if got := echo(t, c, "hi"); got != "A:hi" {
		t.Fatalf("got %q", got)
	}
	b := NewBackend("v2", wsEcho(t, "B", nil))
	p.Swap(b)
	if got := echo(t, c, "still"); got != "A:still" {
		t.Errorf("pinned socket moved: %q", got)
	}
	if _, ws := a.Connections(); ws != 1 {
		t.Errorf("A websockets = %d, want 1", ws)
	}
	if _, ws := b.Connections(); ws != 0 {
		t.Errorf("B websockets = %d, want 0", ws)
	}
	c2 := dialWS(t, url)
	if got := echo(t, c2, "new"); got != "B:new" {
		t.Errorf("new socket: %q", got)
	}
	drained := make(chan error, 1)
	go func() { drained <- a.Drain(context.Background()) }()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with a socket open", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.Close(websocket.StatusNormalClosure, "bye")
	if err := <-drained; err != nil {
		t.Errorf("Drain: %v", err)
	}
	if _, ws := a.Connections(); ws != 0 {
		t.Errorf("A websockets = %d after close", ws)
	}
	c2.CloseNow()
	eventually(t, "B's count to drop", func() bool { _, ws := b.Connections(); return ws == 0 })
}

// TestBackendCloseClosesClient: the upstream ends the socket and never
// hears from the client again; the client side must be closed too and the
// count must drop (the Node original leaked these half-closed sockets).
func TestBackendCloseClosesClient(t *testing.T) {
	conns := make(chan *websocket.Conn, 1)
	p := New(Options{})
	a := NewBackend("v1", wsEcho(t, "A", conns))
	p.Swap(a)
	url := front(t, p)
	// A raw client that completes the handshake and then only reads.
	u := strings.TrimPrefix(url, "http://")
	raw, err := net.Dial("tcp", u)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprintf(raw, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", u)
	br := bufio.NewReader(raw)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	server := <-conns
	server.CloseNow() // the app drops the connection
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Errorf("client side not closed cleanly: %v", err)
	}
	eventually(t, "websocket count to drop", func() bool { _, ws := a.Connections(); return ws == 0 })
}

func TestCloseConnectionsForcesSocketsClosed(t *testing.T) {
	p := New(Options{})
	a := NewBackend("v1", wsEcho(t, "A", nil))
	p.Swap(a)
	url := front(t, p)
	c := dialWS(t, url)
	defer c.CloseNow()
	if got := echo(t, c, "x"); got != "A:x" {
		t.Fatal(got)
	}
	a.CloseConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); err == nil {
		t.Error("socket still open after CloseConnections")
	}
	eventually(t, "count to drop", func() bool { _, ws := a.Connections(); return ws == 0 })
	// Later upgrades through a killed backend fail fast.
	if _, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", nil); err == nil {
		t.Error("upgrade through a closed backend succeeded")
	}
}

func TestUpgradeRefusedByApp(t *testing.T) {
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no sockets here", http.StatusForbidden)
	})
	p := New(Options{})
	a := NewBackend("v1", addr)
	p.Swap(a)
	url := front(t, p)
	_, resp, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("got %v, %v", resp, err)
	}
	eventually(t, "count to drop", func() bool { _, ws := a.Connections(); return ws == 0 })
}

func TestInFlightCountAndDrainTimeout(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	p := New(Options{})
	a := NewBackend("v1", addr)
	p.Swap(a)
	url := front(t, p)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	if h, _ := a.Connections(); h != 1 {
		t.Errorf("in-flight = %d, want 1", h)
	}
	p.Swap(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := a.Drain(ctx); err == nil {
		t.Error("Drain returned nil while a request was in flight")
	}
	close(release)
	<-done
	if err := a.Drain(context.Background()); err != nil {
		t.Errorf("Drain after completion: %v", err)
	}
}

// TestSwapUnderLoad: many clients, backends swapped continuously, and not a
// single failed request.
func TestSwapUnderLoad(t *testing.T) {
	_, a := upstream(t, "A", nil)
	_, b := upstream(t, "B", nil)
	p := New(Options{})
	p.Swap(NewBackend("a", a))
	url := front(t, p)
	stop := make(chan struct{})
	var failures atomic.Int64
	var requests atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(url)
				requests.Add(1)
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%v %v", resp, err)
					}
					mu.Unlock()
				}
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		addr := a
		if i%2 == 0 {
			addr = b
		}
		p.Swap(NewBackend(fmt.Sprint(i), addr))
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Errorf("%d of %d requests failed; first: %v", failures.Load(), requests.Load(), firstErr)
	}
}

func TestIsUpgrade(t *testing.T) {
	for _, tc := range []struct {
		h    http.Header
		want bool
	}{
		{http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, true},
		{http.Header{"Upgrade": {"websocket"}, "Connection": {"keep-alive, upgrade"}}, true},
		{http.Header{"Upgrade": {"websocket"}}, false},
		{http.Header{"Connection": {"upgrade"}}, false},
	} {
		if got := isUpgrade(tc.h); got != tc.want {
			t.Errorf("%v: got %v", tc.h, got)
		}
	}
}
