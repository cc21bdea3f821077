package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsApp is a WebSocket echo upstream that answers "name:message". It hands
// each accepted server-side connection to conns and reports on ended when a
// connection's handler returns, i.e. when the backend side saw it close.
type wsApp struct {
	addr  string
	conns chan *websocket.Conn
	ended chan error
}

func newWSApp(t testing.TB, name string) *wsApp {
	t.Helper()
	app := &wsApp{conns: make(chan *websocket.Conn, 16), ended: make(chan error, 16)}
	_, app.addr = upstream(t, name, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return // Accept answered the client already
		}
		defer c.CloseNow()
		app.conns <- c
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err == nil {
				err = c.Write(ctx, typ, append([]byte(name+":"), msg...))
			}
			if err != nil {
				app.ended <- err
				return
			}
		}
	})
	return app
}

func recv[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestWebSocketPinnedAcrossSwap(t *testing.T) {
	p, url, _ := newProxy(t)
	a := activate(p, "v1", newWSApp(t, "A").addr)
	c := dialWS(t, url)
	if got := echo(t, c, "hi"); got != "A:hi" {
		t.Fatalf("got %q, want A:hi", got)
	}
	wantCounts(t, a, 0, 1)

	b := activate(p, "v2", newWSApp(t, "B").addr)
	if got := echo(t, c, "still"); got != "A:still" {
		t.Errorf("after Swap the open socket answered %q, want A:still", got)
	}
	wantCounts(t, a, 0, 1)
	wantCounts(t, b, 0, 0)

	c2 := dialWS(t, url)
	if got := echo(t, c2, "new"); got != "B:new" {
		t.Errorf("a socket opened after Swap answered %q, want B:new", got)
	}
	wantCounts(t, a, 0, 1)
	wantCounts(t, b, 0, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain(v1) with a socket open: %v, want DeadlineExceeded", err)
	}
	drained := make(chan error, 1)
	go func() { drained <- a.Drain(context.Background()) }()
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("client close: %v", err)
	}
	if err := recv(t, "Drain(v1)", drained); err != nil {
		t.Errorf("Drain(v1): %v", err)
	}
	wantCounts(t, a, 0, 0)

	if err := c2.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("client close: %v", err)
	}
	waitCounts(t, b, 0, 0)
}

// rawWebSocket completes a WebSocket handshake through the proxy at base
// over a bare TCP connection and returns it with its reader. Unlike a
// WebSocket library, nothing closes it until the test ends.
func rawWebSocket(t testing.TB, base string) (net.Conn, *bufio.Reader) {
	t.Helper()
	host := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_, err = fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", host)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return conn, br
}

// TestBackendCloseClosesClient: the app ends a WebSocket. The proxy must
// close the client side too and drop the count, even if the client never
// closes its end; the Node original left such sockets half-closed, and the
// draining release (and shutdown) waited for them forever.
func TestBackendCloseClosesClient(t *testing.T) {
	t.Run("client that never closes", func(t *testing.T) {
		p, url, _ := newProxy(t)
		app := newWSApp(t, "A")
		a := activate(p, "v1", app.addr)
		raw, br := rawWebSocket(t, url)
		server := recv(t, "the app's connection", app.conns)
		wantCounts(t, a, 0, 1)
		p.Swap(nil)

		_ = server.CloseNow() // the app drops the connection without a close frame
		if err := raw.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Errorf("client side: %v, want it closed by the proxy (EOF)", err)
		}
		// raw is still open on the client's side; the proxy must not wait for it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Drain(ctx); err != nil {
			t.Errorf("Drain: %v", err)
		}
		wantCounts(t, a, 0, 0)
	})

	t.Run("close handshake from the app", func(t *testing.T) {
		p, url, _ := newProxy(t)
		app := newWSApp(t, "A")
		a := activate(p, "v1", app.addr)
		c := dialWS(t, url)
		server := recv(t, "the app's connection", app.conns)

		closed := make(chan error, 1)
		go func() { closed <- server.Close(websocket.StatusGoingAway, "release stopping") }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, err := c.Read(ctx) // answers the close frame
		if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
			t.Errorf("client read: %v, want close status GoingAway", err)
		}
		if err := recv(t, "the app's close", closed); err != nil {
			t.Errorf("app close: %v", err)
		}
		waitCounts(t, a, 0, 0)
	})
}

// TestCloseConnectionsClosesBothSides is the drain-timeout path: sockets
// that outlive the drain are cut on both sides and the count drops.
func TestCloseConnectionsClosesBothSides(t *testing.T) {
	p, url, _ := newProxy(t)
	app := newWSApp(t, "A")
	a := activate(p, "v1", app.addr)
	const n = 5
	var clients []*websocket.Conn
	for i := range n {
		c := dialWS(t, url)
		if got := echo(t, c, fmt.Sprint(i)); got != fmt.Sprintf("A:%d", i) {
			t.Fatalf("socket %d answered %q", i, got)
		}
		clients = append(clients, c)
	}
	wantCounts(t, a, 0, n)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain: %v, want DeadlineExceeded", err)
	}
	a.CloseConnections()
	a.CloseConnections() // idempotent

	readCtx, cancelRead := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelRead()
	for i, c := range clients {
		if _, _, err := c.Read(readCtx); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("client %d read: %v, want the connection closed", i, err)
		}
	}
	for i := range n {
		if err := recv(t, "the app's side to close", app.ended); err == nil {
			t.Errorf("app connection %d ended without error", i)
		}
	}
	if err := a.Drain(context.Background()); err != nil {
		t.Errorf("Drain after CloseConnections: %v", err)
	}
	wantCounts(t, a, 0, 0)

	// A backend that was force-closed takes no new upgrades.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, wsURL(url), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("upgrade through a closed backend: %v, %v; want 503", resp, err)
	}
	wantCounts(t, a, 0, 0)
}

// TestCloseConnectionsDuringHandshake: an upgrade the app has not answered
// yet is cut too.
func TestCloseConnectionsDuringHandshake(t *testing.T) {
	entered := make(chan struct{}, 1)
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done() // never answers the handshake
	})
	p, url, log := newProxy(t)
	a := activate(p, "v1", addr)
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, wsURL(url), nil)
		done <- result{resp, err}
	}()
	recv(t, "the handshake to reach the app", entered)
	wantCounts(t, a, 0, 1)
	a.CloseConnections()
	res := recv(t, "the client's dial", done)
	if res.err == nil || res.resp == nil || res.resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial: %v, %v; want 503", res.resp, res.err)
	}
	waitCounts(t, a, 0, 0)
	if errs := log.all(); len(errs) != 0 {
		t.Errorf("OnError called for a force-close: %q", errs)
	}
}

func TestUpgradeRefusedByApp(t *testing.T) {
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no sockets here", http.StatusForbidden)
	})
	p, url, _ := newProxy(t)
	a := activate(p, "v1", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, wsURL(url), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dial: %v, %v; want the app's 403", resp, err)
	}
	// coder/websocket keeps the first bytes of a failed handshake's body.
	if b, _ := io.ReadAll(resp.Body); string(b) != "no sockets here\n" {
		t.Errorf("body %q, want the app's", b)
	}
	waitCounts(t, a, 0, 0)
}

func TestUpgradeToRefusedUpstream502(t *testing.T) {
	p, url, log := newProxy(t)
	a := activate(p, "v1", closedAddr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, wsURL(url), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Errorf("dial: %v, %v; want 502", resp, err)
	}
	wantCounts(t, a, 0, 0)
	if errs := log.all(); len(errs) != 1 {
		t.Errorf("OnError got %q, want one report", errs)
	}
}

// TestUpgradeKeepsBytesSentWithHandshake: bytes a client sends right behind
// its upgrade request, which net/http has already buffered when the proxy
// takes the connection over, still reach the app; and bytes the app sends
// in the same write as its 101 reach the client. Both with the in-process
// copy and with the spliced one (an FDStore), which writes them out before
// it stores the connection.
func TestUpgradeKeepsBytesSentWithHandshake(t *testing.T) {
	for _, withStore := range []bool{false, true} {
		t.Run(fmt.Sprintf("fdstore=%v", withStore), func(t *testing.T) {
			_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
				conn, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				defer conn.Close()
				if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello;"); err != nil {
					return
				}
				_, _ = io.Copy(conn, brw) // an echo protocol, until the client closes
			})
			o := Options{}
			var store *fdStore
			if withStore {
				store = newFDStore(t)
				o.FDStore = store
			}
			p := New(o)
			url := newServer(t, p)
			a := activate(p, "v1", addr)
			host := strings.TrimPrefix(url, "http://")
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// One write: the request and the first protocol bytes arrive together.
			_, err = fmt.Fprintf(conn, "GET /echo HTTP/1.1\r\nHost: %s\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nearly bytes", host)
			if err != nil {
				t.Fatal(err)
			}
			if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("handshake: %v, %v", resp, err)
			}
			want := "hello;early bytes"
			got := make([]byte, len(want))
			if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
				t.Errorf("got %q, %v; want %q", got, err, want)
			}
			wantCounts(t, a, 0, 1)
			if withStore && len(store.names()) != 6 {
				t.Errorf("stored %v, want the connection's 6 descriptors", store.names())
			}
			_ = conn.Close() // the client ends the connection
			waitCounts(t, a, 0, 0)
			if withStore && len(store.names()) != 0 {
				t.Errorf("still stored after the end: %v", store.names())
			}
			p.Park()
		})
	}
}

// TestUpgradeWrongProtocolClosesBackend: an app that answers 101 with a
// protocol the client did not ask for gets its connection closed, instead
// of left open as ReverseProxy alone leaves it.
func TestUpgradeWrongProtocolClosesBackend(t *testing.T) {
	ended := make(chan error, 4)
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: not-websocket\r\nConnection: Upgrade\r\n\r\n"); err != nil {
			ended <- err
			return
		}
		_, err = io.Copy(io.Discard, brw) // until the proxy closes its side
		ended <- err
	})
	p, url, log := newProxy(t)
	a := activate(p, "v1", addr)
	for _, tc := range []struct {
		name    string
		upgrade bool
	}{
		{"upgrade request", true},
		{"plain request", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, url+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.upgrade {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
			}
			resp, err := newClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close() // the status is the point
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("got %d, want 502", resp.StatusCode)
			}
			if err := recv(t, "the app's connection to be closed", ended); err != nil {
				t.Errorf("app side: %v, want EOF", err)
			}
			waitCounts(t, a, 0, 0)
		})
	}
	if errs := log.all(); len(errs) != 2 {
		t.Errorf("OnError got %q, want two reports", errs)
	}
}
