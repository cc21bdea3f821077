package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// rawUpstream is a hand-written HTTP/1.1 server, so tests control exactly
// when connections close. handle gets each request line and returns the
// raw response bytes and whether to close the connection after them.
func rawUpstream(t *testing.T, handle func(conn int, req *http.Request) (string, bool)) (string, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	addr := serveConns(t, func(n int, c net.Conn) func() {
		conns.Store(int64(n))
		return func() {
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				resp, closeAfter := handle(n, req)
				if _, err := io.WriteString(c, resp); err != nil || closeAfter {
					return
				}
			}
		}
	})
	return addr, &conns
}

func ok(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func TestFastPathReusesConnections(t *testing.T) {
	addr, conns := rawUpstream(t, func(c int, r *http.Request) (string, bool) { return ok("x"), false })
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	requestsOnOneUpstream(t, newClient(t), url, 20, conns)
}

// requestsOnOneUpstream sends n sequential GETs and checks they all used a
// single upstream connection.
func requestsOnOneUpstream(t *testing.T, client *http.Client, url string, n int, conns *atomic.Int64) {
	t.Helper()
	for i := 0; i < n; i++ {
		if code, body := get(t, client, url+"/"); code != 200 || body != "x" {
			t.Fatalf("got %d %q", code, body)
		}
	}
	if c := conns.Load(); c != 1 {
		t.Errorf("%d upstream connections for %d requests, want 1", c, n)
	}
}

// TestIdleConnectionClosedByApp: the app closes a kept-alive connection
// while it sits in the pool (a keep-alive timeout); the next request must
// not fail.
func TestIdleConnectionClosedByApp(t *testing.T) {
	var mu sync.Mutex
	var served []int
	addr, conns := rawUpstream(t, func(c int, r *http.Request) (string, bool) {
		mu.Lock()
		served = append(served, c)
		mu.Unlock()
		return ok("x"), false
	})
	p, url, _ := newProxy(t)
	b := activate(p, "v1", addr)
	client := newClient(t)
	get(t, client, url+"/")
	// Close the pooled connection from the app's side.
	f := b.fast.Load()
	pc := <-f.idle
	_ = pc.conn.(*net.TCPConn).CloseRead() // the app's close shows up as EOF to our peek
	f.idle <- pc
	for i := 0; i < 3; i++ {
		if code, _ := get(t, client, url+"/"); code != 200 {
			t.Fatalf("request %d after the app closed the idle connection: %d", i, code)
		}
	}
	if conns.Load() != 2 {
		t.Errorf("%d connections, want 2 (the dead one replaced once)", conns.Load())
	}
}

// TestStaleConnectionRetried: the connection dies between the peek and
// the request; a GET is sent again on a fresh connection.
func TestStaleConnectionRetried(t *testing.T) {
	addr, conns := rawUpstream(t, func(c int, r *http.Request) (string, bool) {
		if c == 1 && r.URL.Path == "/second" {
			return "", true // the first connection dies without answering
		}
		return ok(r.URL.Path), false
	})
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	client := newClient(t)
	get(t, client, url+"/first")
	if code, body := get(t, client, url+"/second"); code != 200 || body != "/second" {
		t.Errorf("retry: %d %q", code, body)
	}
	if conns.Load() != 2 {
		t.Errorf("%d connections, want 2", conns.Load())
	}
	// A POST without a body is not repeated: the app may have acted on it.
	addr2, _ := rawUpstream(t, func(c int, r *http.Request) (string, bool) {
		if c == 1 && r.Method == http.MethodPost {
			return "", true
		}
		return ok("x"), false
	})
	activate(p, "v2", addr2)
	get(t, client, url+"/")
	resp, err := client.Post(url+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("POST on a dying connection: %d, want 502", resp.StatusCode)
	}
}

func TestInterimResponsesAndHead(t *testing.T) {
	addr, _ := rawUpstream(t, func(c int, r *http.Request) (string, bool) {
		if r.Method == http.MethodHead {
			return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false
		}
		return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + ok("hello"), false
	})
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	client := newClient(t)
	if code, body := get(t, client, url+"/"); code != 200 || body != "hello" {
		t.Errorf("after 103: %d %q", code, body)
	}
	resp, err := client.Head(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 5 {
		t.Errorf("HEAD: %d %d", resp.StatusCode, resp.ContentLength)
	}
	// The connection is still in sync after the HEAD (no body was read).
	if code, body := get(t, client, url+"/"); code != 200 || body != "hello" {
		t.Errorf("after HEAD: %d %q", code, body)
	}
}

func TestAbandonedBodyClosesConnection(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/endless" {
			_, _ = io.WriteString(w, "small")
			return
		}
		chunk := make([]byte, 32<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	p, url, _ := newProxy(t)
	b := activate(p, "v1", srv.Listener.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/endless", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = resp.Body.Read(make([]byte, 100))
	cancel() // the client leaves mid-body
	resp.Body.Close()
	waitCounts(t, b, 0, 0)
	// The half-read connection was not pooled: the next request dials anew
	// and gets a clean answer.
	if code, body := get(t, newClient(t), url+"/small"); code != 200 || body != "small" {
		t.Errorf("after an abandoned body: %d %q", code, body)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d upstream connections, want 2 (the abandoned one is not reused)", n)
	}
}

// TestClientGoneWhileUpstreamThinks: a client that leaves while the app
// thinks unblocks the proxy's wait for the answer, on a plain server
// (context.AfterFunc per request) and on one whose connections
// ClientConns tracks (the connection watches itself); the aborted app
// connection is not pooled, so the next request is answered cleanly.
func TestClientGoneWhileUpstreamThinks(t *testing.T) {
	for _, tracked := range []bool{false, true} {
		t.Run(fmt.Sprintf("tracked=%v", tracked), func(t *testing.T) {
			release := make(chan struct{})
			_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/fast" {
					_, _ = io.WriteString(w, "fast")
					return
				}
				select {
				case <-release:
				case <-r.Context().Done():
				}
			})
			defer close(release)
			p, url, _ := newProxyServedBy(t, tracked)
			b := activate(p, "v1", addr)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
				resp, err := newClient(t).Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			waitCounts(t, b, 1, 0)
			cancel()
			<-done
			// The proxy's request ended too (the upstream read was unblocked).
			waitCounts(t, b, 0, 0)
			for range 3 {
				if code, body := get(t, newClient(t), url+"/fast"); code != 200 || body != "fast" {
					t.Fatalf("after the client left: %d %q", code, body)
				}
			}
		})
	}
}

// newProxyServedBy returns a Proxy served on a real listener, through
// ClientConns (ConnState, ConnContext, Listener) as the daemon serves it
// when tracked, else by a plain httptest server.
func newProxyServedBy(t *testing.T, tracked bool) (*Proxy, string, *errorLog) {
	t.Helper()
	if !tracked {
		return newProxy(t)
	}
	log := &errorLog{}
	p := New(Options{OnError: log.onError})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc := NewClientConns(nil)
	srv := &http.Server{Handler: p, ConnState: cc.ConnState, ConnContext: cc.ConnContext}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(cc.Listener(ln)) // ends with the Close below
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
		p.Close()
	})
	return p, "http://" + ln.Addr().String(), log
}

func TestCloseConnectionsEmptiesPool(t *testing.T) {
	addr, _ := rawUpstream(t, func(c int, r *http.Request) (string, bool) { return ok("x"), false })
	p, url, _ := newProxy(t)
	b := activate(p, "v1", addr)
	get(t, newClient(t), url+"/")
	if n := len(b.fast.Load().idle); n != 1 {
		t.Fatalf("%d pooled connections, want 1", n)
	}
	b.CloseConnections()
	if n := len(b.fast.Load().idle); n != 0 {
		t.Errorf("%d pooled connections after CloseConnections", n)
	}
}

func TestForwardTrailersAndTE(t *testing.T) {
	var gotTE string
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		gotTE = r.Header.Get("Te")
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc123")
	})
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	req, _ := http.NewRequest(http.MethodGet, url+"/", nil)
	req.Header.Set("Te", "trailers")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "body" || resp.Trailer.Get("X-Checksum") != "abc123" {
		t.Errorf("body %q trailer %v", body, resp.Trailer)
	}
	if gotTE != "trailers" {
		t.Errorf("Te at the app: %q, want trailers", gotTE)
	}
}

func TestAbsoluteFormTargetUsesReverseProxy(t *testing.T) {
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Path+"?"+r.URL.RawQuery)
	})
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET http://example.com/abs?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "/abs?x=1" {
		t.Errorf("got %d %q", resp.StatusCode, b)
	}
}

// TestClientConnectionCloseKeepsUpstreamAlive: clients that open a new
// connection per request must not cost a new upstream connection each.
func TestClientConnectionCloseKeepsUpstreamAlive(t *testing.T) {
	addr, conns := rawUpstream(t, func(c int, r *http.Request) (string, bool) { return ok("x"), false })
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	requestsOnOneUpstream(t, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, url, 10, conns)
}

func TestUpgradeAddsNoUserAgent(t *testing.T) {
	got := make(chan []string, 1)
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header["User-Agent"]
		http.Error(w, "no", http.StatusForbidden)
	})
	p, url, _ := newProxy(t)
	activate(p, "v1", addr)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ua := <-got; len(ua) != 0 {
		t.Errorf("app saw User-Agent %q; the client sent none", ua)
	}
}

// TestRefusedAnswerLeavesNoFields: the answer's fields are parsed straight
// into the client's header map, so an answer refused half-way (obs-fold
// after a field; an unrequested 101) must not leave its fields in the
// gateway's 502; nor may a status below 100 (net/http's WriteHeader would
// panic), endless interim answers or an oversized head get through; the
// next, well-formed answer still arrives whole.
func TestRefusedAnswerLeavesNoFields(t *testing.T) {
	answers := map[string]string{
		"/fold": "HTTP/1.1 200 OK\r\nX-App: leaked\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"/101":  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nX-App: leaked\r\n\r\n",
		"/000":  "HTTP/1.1 000 Zero\r\nX-App: leaked\r\nContent-Length: 0\r\n\r\n",
		"/1xx":  strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", maxInterim+1) + "HTTP/1.1 200 OK\r\nX-App: leaked\r\nContent-Length: 0\r\n\r\n",
		"/big":  "HTTP/1.1 200 OK\r\nX-App: leaked\r\nX-Big: " + strings.Repeat("b", maxAnswerHead) + "\r\nContent-Length: 0\r\n\r\n",
		"/ok":   "HTTP/1.1 200 OK\r\nX-App: fine\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nConnection: x-hop\r\nX-Hop: dropped\r\nContent-Length: 2\r\n\r\nok",
	}
	addr, _ := rawUpstream(t, func(c int, r *http.Request) (string, bool) { return answers[r.URL.Path], r.URL.Path != "/ok" })
	p, url, errs := newProxy(t)
	activate(p, "v1", addr)
	c := newClient(t)
	for _, path := range []string{"/fold", "/101", "/000", "/1xx", "/big", "/ok"} {
		resp, err := c.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch path {
		case "/ok":
			if resp.StatusCode != 200 || string(body) != "ok" || resp.Header.Get("X-App") != "fine" ||
				len(resp.Header.Values("Set-Cookie")) != 2 || resp.Header.Get("X-Hop") != "" {
				t.Errorf("%s: %d %q %v", path, resp.StatusCode, body, resp.Header)
			}
		default:
			if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-App") != "" || resp.Header.Get("Upgrade") != "" {
				t.Errorf("%s: %d %v, want a 502 without the app's fields", path, resp.StatusCode, resp.Header)
			}
		}
	}
	// The refusal says which rule (docs/troubleshooting.md).
	if all := strings.Join(errs.all(), "\n"); !strings.Contains(all, "stricter than net/http: obs-fold") {
		t.Errorf("no proxy error names the rule: %q", all)
	}
}
