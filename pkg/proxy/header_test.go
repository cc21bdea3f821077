package proxy

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// wireHead is an HTTP head as it crossed a socket: the first line, and the
// header lines sorted by name. The sort is stable, so the order of the
// lines of one name (which is meaningful) stays as it was; the order of
// different names carries no meaning and differs between the paths.
type wireHead struct {
	line   string
	fields []string
	body   string
}

func (h wireHead) String() string {
	return h.line + "\n\t" + strings.Join(h.fields, "\n\t") + "\n\tbody " + strconv.Quote(h.body)
}

// readWireHead reads a head and the Content-Length body after it from br,
// keeping every line byte for byte.
func readWireHead(br *bufio.Reader) (wireHead, error) {
	var h wireHead
	line, err := br.ReadString('\n')
	if err != nil {
		return h, fmt.Errorf("read first line: %w", err)
	}
	h.line = strings.TrimSuffix(line, "\r\n")
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return h, fmt.Errorf("read header line: %w", err)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			break
		}
		h.fields = append(h.fields, line)
		name, value, _ := strings.Cut(line, ":")
		switch {
		case strings.EqualFold(name, "Content-Length"):
			if length, err = strconv.Atoi(strings.TrimSpace(value)); err != nil {
				return h, fmt.Errorf("bad %q: %w", line, err)
			}
		case strings.EqualFold(name, "Transfer-Encoding"):
			return h, fmt.Errorf("unexpected %q: every body in this test has a length", line)
		}
	}
	slices.SortStableFunc(h.fields, func(a, b string) int {
		an, _, _ := strings.Cut(a, ":")
		bn, _, _ := strings.Cut(b, ":")
		return strings.Compare(an, bn)
	})
	if !strings.HasPrefix(h.line, "HTTP/") || !strings.Contains(h.line, " 101 ") {
		body := make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			return h, fmt.Errorf("read body: %w", err)
		}
		h.body = string(body)
	}
	return h, nil
}

// headApp is a hand-written HTTP/1.1 app that reports each request head
// exactly as its bytes arrived, so nothing net/http would normalise on the
// way in hides a difference. It answers plain requests with ok200 and
// accepts an upgrade with a 101 and one WebSocket text frame, wsHello,
// then closes; with refuse set it answers ok200 to an upgrade too.
type headApp struct {
	addr   string
	heads  chan wireHead
	refuse atomic.Bool
	done   chan struct{} // closed when the test ends
}

const (
	// ok200 carries hop-by-hop headers, which no client may see. (Not
	// "Connection: close, X-Resp-Hop": net/http's response reader deletes
	// a Connection header holding "close", and with it the names it lists,
	// before any path sees them.)
	ok200   = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: app only\r\nKeep-Alive: timeout=5\r\nX-App: yes\r\n\r\nok"
	wsHello = "\x81\x05hello" // an unmasked text frame, as a server sends it
	wsKey   = "dGhlIHNhbXBsZSBub25jZQ=="
)

func newHeadApp(t *testing.T) *headApp {
	t.Helper()
	app := &headApp{heads: make(chan wireHead, 1), done: make(chan struct{})}
	app.addr = serveConns(t, func(_ int, c net.Conn) func() {
		return func() { app.serve(t, c) }
	})
	t.Cleanup(func() { close(app.done) }) // runs before serveConns' cleanup
	return app
}

// serve answers the requests on one connection until it closes or
// switches protocols.
func (app *headApp) serve(t *testing.T, c net.Conn) {
	br := bufio.NewReader(c)
	for {
		if _, err := br.Peek(1); err != nil {
			return // the proxy closed a pooled connection, or the test ended
		}
		h, err := readWireHead(br)
		if err != nil {
			t.Errorf("app: %v", err)
			return
		}
		select {
		case app.heads <- h:
		case <-app.done:
			return
		}
		if key := fieldValue(h.fields, "Sec-Websocket-Key"); key != "" && !app.refuse.Load() {
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+wsAccept(key)+"\r\n\r\n"+wsHello)
			return // the tunnel ends here: the proxy must close the client too
		}
		if _, err := io.WriteString(c, ok200); err != nil {
			return // shows as the client's error
		}
	}
}

func fieldValue(fields []string, name string) string {
	for _, f := range fields {
		if n, v, _ := strings.Cut(f, ":"); strings.EqualFold(n, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// wsAccept is RFC 6455's answer to a Sec-WebSocket-Key.
func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// rawExchange sends one request, byte for byte, on a new connection to
// front and returns the answer's head; after a 101 its body is what came
// through the tunnel until the app closed it.
func rawExchange(t *testing.T, front, request string) wireHead {
	t.Helper()
	c, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	h, err := readWireHead(br)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	if strings.Contains(h.line, " 101 ") {
		rest, err := io.ReadAll(br) // the proxy closes the client when the app closes
		if err != nil {
			t.Fatalf("client: read tunnel: %v", err)
		}
		h.body = string(rest)
	}
	return h
}

// TestSamePolicyOnEveryPath sends the same requests through each of the
// proxy's paths and checks that the app sees the same head on every one:
// the same request line, Host and header lines. The paths differ only in
// what they must: a body brings its Content-Length, a switch its
// Connection and Upgrade. The answers a client sees are compared the same
// way. Each case also pins the expected head, so the paths cannot agree on
// something wrong.
func TestSamePolicyOnEveryPath(t *testing.T) {
	app := newHeadApp(t)
	p, url, _ := newProxy(t)
	activate(p, "v1", app.addr)
	// Every path once through the net/http server and once through the
	// event loop (loop.go), which writes a plain GET's head itself and
	// hands every other request to the net/http server.
	lp := New(Options{})
	activate(lp, "v1", app.addr)
	_, viaLoop := loopFront(t, lp)
	for _, front := range []string{strings.TrimPrefix(url, "http://"), viaLoop} {
		samePolicyOnEveryPath(t, app, front)
	}
}

func samePolicyOnEveryPath(t *testing.T, app *headApp, front string) {

	for _, tc := range []struct {
		name   string
		target string
		host   string   // "" means front
		fields []string // the client's header lines besides Host
		want   []string // the app's header lines besides Host, for a GET; "{front}" is replaced
	}{
		{
			name:   "bare",
			target: "/",
			want:   []string{"X-Forwarded-For: 127.0.0.1", "X-Forwarded-Host: {front}", "X-Forwarded-Port: {port}", "X-Forwarded-Proto: http"},
		},
		{
			name:   "behind nginx",
			target: "/orders?id=7",
			host:   "shop.example",
			fields: []string{"X-Forwarded-For: 203.0.113.9", "X-Forwarded-Proto: https", "X-Real-IP: 203.0.113.9", "User-Agent: curl/8.5.0", "Accept: */*"},
			// No port in Host: the original's proxy reports the scheme's
			// default, not the port it listens on.
			want: []string{"Accept: */*", "User-Agent: curl/8.5.0", "X-Forwarded-For: 203.0.113.9, 127.0.0.1",
				"X-Forwarded-Host: shop.example", "X-Forwarded-Port: 80", "X-Forwarded-Proto: https", "X-Real-Ip: 203.0.113.9"},
		},
		{
			name:   "hop-by-hop",
			target: "/",
			fields: []string{"Connection: keep-alive, X-Hop", "X-Hop: front end only", "Proxy-Connection: keep-alive", "Keep-Alive: timeout=5",
				"Te: trailers, deflate", "Proxy-Authorization: Basic Zm9vOmJhcg==", "X-End-To-End: kept"},
			want: []string{"Te: trailers", "X-End-To-End: kept", "X-Forwarded-For: 127.0.0.1", "X-Forwarded-Host: {front}",
				"X-Forwarded-Port: {port}", "X-Forwarded-Proto: http"},
		},
		{
			name:   "forwarding record survives Connection",
			target: "/",
			host:   "internal.example",
			fields: []string{"Connection: Forwarded, X-Forwarded-For, X-Forwarded-Port", "X-Forwarded-For: 198.51.100.1", "X-Forwarded-For: 203.0.113.9, 10.0.0.2",
				"X-Forwarded-Host: shop.example", "X-Forwarded-Port: 443", "Forwarded: for=203.0.113.9;proto=https"},
			want: []string{"Forwarded: for=203.0.113.9;proto=https", "X-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.0.0.2, 127.0.0.1",
				"X-Forwarded-Host: shop.example", "X-Forwarded-Port: 443,80", "X-Forwarded-Proto: http"},
		},
		{
			name:   "repeated X-Forwarded-Port",
			target: "/",
			host:   "shop.example:8443",
			fields: []string{"X-Forwarded-Port: 443", "X-Forwarded-Port: 8080"},
			want: []string{"X-Forwarded-For: 127.0.0.1", "X-Forwarded-Host: shop.example:8443", "X-Forwarded-Port: 443, 8080,8443",
				"X-Forwarded-Proto: http"},
		},
		{
			name:   "IPv6 literal Host",
			target: "/",
			host:   "[::1]:8080",
			want:   []string{"X-Forwarded-For: 127.0.0.1", "X-Forwarded-Host: [::1]:8080", "X-Forwarded-Port: 8080", "X-Forwarded-Proto: http"},
		},
		{
			name:   "raw target and repeated headers",
			target: "/a{b}/%7e/c%2Fd?q=1;x=%zz&y",
			host:   "shop.example:8443",
			fields: []string{"x-lower-case: v", "X-Multi: 1", "Accept-Encoding: gzip", "X-Multi: 2", "X-Empty:"},
			want: []string{"Accept-Encoding: gzip", "X-Empty: ", "X-Forwarded-For: 127.0.0.1", "X-Forwarded-Host: shop.example:8443",
				"X-Forwarded-Port: 8443", "X-Forwarded-Proto: http", "X-Lower-Case: v", "X-Multi: 1", "X-Multi: 2"},
		},
	} {
		t.Run(tc.name+" via "+front, func(t *testing.T) {
			host := tc.host
			if host == "" {
				host = front
			}
			want := wireHead{line: "GET " + tc.target + " HTTP/1.1", fields: []string{"Host: " + host}}
			for _, f := range tc.want {
				f = strings.ReplaceAll(f, "{front}", front)
				want = withFields(want, strings.ReplaceAll(f, "{port}", front[strings.LastIndexByte(front, ':')+1:]))
			}
			upgradeFields := []string{"Sec-WebSocket-Key: " + wsKey, "Sec-WebSocket-Version: 13", "Upgrade: websocket"}
			if i := slices.IndexFunc(tc.fields, func(f string) bool { return strings.HasPrefix(f, "Connection:") }); i >= 0 {
				upgradeFields = append(upgradeFields, tc.fields[i]+", Upgrade")
			} else {
				upgradeFields = append(upgradeFields, "Connection: Upgrade")
			}
			withoutConnection := slices.DeleteFunc(slices.Clone(tc.fields), func(f string) bool { return strings.HasPrefix(f, "Connection:") })

			answer := wireHead{line: "HTTP/1.1 200 OK", fields: []string{"Content-Length: 2", "Content-Type: text/plain", "X-App: yes"}, body: "ok"}
			for _, path := range []struct {
				name    string
				request string
				refuse  bool
				want    wireHead // at the app
				answer  wireHead // at the client, without Date
			}{
				{
					name:    "GET without a body (forward.go)",
					request: rawRequest("GET", tc.target, host, tc.fields, ""),
					want:    want,
					answer:  answer,
				},
				{
					name:    "GET in absolute form (ReverseProxy)",
					request: rawRequest("GET", "http://"+host+tc.target, host, tc.fields, ""),
					want:    want,
					answer:  answer,
				},
				{
					name:    "POST with a body (ReverseProxy)",
					request: rawRequest("POST", tc.target, host, tc.fields, "hello"),
					want:    withFields(wireHead{line: "POST" + strings.TrimPrefix(want.line, "GET"), fields: want.fields, body: "hello"}, "Content-Length: 5"),
					answer:  answer,
				},
				{
					name:    "WebSocket upgrade (upgrade.go)",
					request: rawRequest("GET", tc.target, host, append(withoutConnection, upgradeFields...), ""),
					want:    withFields(want, "Connection: Upgrade", "Sec-Websocket-Key: "+wsKey, "Sec-Websocket-Version: 13", "Upgrade: websocket"),
					answer: wireHead{line: "HTTP/1.1 101 Switching Protocols", body: wsHello,
						fields: []string{"Connection: Upgrade", "Sec-Websocket-Accept: " + wsAccept(wsKey), "Upgrade: websocket"}},
				},
				{
					name:    "WebSocket upgrade refused by the app (upgrade.go)",
					request: rawRequest("GET", tc.target, host, append(withoutConnection, upgradeFields...), ""),
					refuse:  true,
					want:    withFields(want, "Connection: Upgrade", "Sec-Websocket-Key: "+wsKey, "Sec-Websocket-Version: 13", "Upgrade: websocket"),
					answer:  answer,
				},
			} {
				app.refuse.Store(path.refuse)
				got := rawExchange(t, front, path.request)
				got.fields = slices.DeleteFunc(got.fields, func(f string) bool { return strings.HasPrefix(f, "Date:") })
				if got.String() != path.answer.String() {
					t.Errorf("%s: client got\n%v\nwant\n%v", path.name, got, path.answer)
				}
				select {
				case at := <-app.heads:
					if at.String() != path.want.String() {
						t.Errorf("%s: app got\n%v\nwant\n%v", path.name, at, path.want)
					}
				default:
					t.Errorf("%s: the request never reached the app", path.name)
				}
			}
		})
	}
}

// rawRequest is an HTTP/1.1 request as a client writes it.
func rawRequest(method, target, host string, fields []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for _, f := range fields {
		b.WriteString(f + "\r\n")
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

// withFields returns h with more header lines, sorted as readWireHead sorts.
func withFields(h wireHead, more ...string) wireHead {
	h.fields = append(slices.Clone(h.fields), more...)
	slices.SortStableFunc(h.fields, func(a, b string) int {
		an, _, _ := strings.Cut(a, ":")
		bn, _, _ := strings.Cut(b, ":")
		return strings.Compare(an, bn)
	})
	return h
}

// An underscore spelling of a forwarding-record, framing or hop-by-hop
// name does not reach the app (Rack and CGI take X_Forwarded_For for
// X-Forwarded-For); other names with '_' pass.
func TestUnderscoreAliasesDropped(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nx_forwarded_proto: https\r\nProxy_Connection: x\r\nContent_Length: 9\r\nTransfer_Encoding: chunked\r\nX_Custom: kept\r\nX-Real_Name: kept too\r\n\r\n"
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	req.RemoteAddr = "192.0.2.1:1"
	var out strings.Builder
	bw := bufio.NewWriter(&out)
	if err := writeHead(bw, req, ""); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	h, err := readWireHead(bufio.NewReader(strings.NewReader(out.String())))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Host: a", "X-Forwarded-For: 192.0.2.1", "X-Forwarded-Host: a", "X-Forwarded-Port: 80", "X-Forwarded-Proto: http", "X-Real_name: kept too", "X_custom: kept"}
	if !slices.Equal(h.fields, want) {
		t.Fatalf("the app got\n%q\nwant\n%q", h.fields, want)
	}
}
