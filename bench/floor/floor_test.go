package floor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// modes starts each forwarder on a real listener in front of upstream and
// returns its address and a stop function.
var modes = map[string]func(t *testing.T, upstream string) string{
	"goroutine": func(t *testing.T, upstream string) string {
		ln := listen(t)
		go Goroutine(ln, upstream)
		return ln.Addr().String()
	},
	"wait": func(t *testing.T, upstream string) string {
		ln := listen(t)
		go Wait(ln, upstream)
		return ln.Addr().String()
	},
	"loop":      startLoop(PassHeads),
	"loop-h1":   startLoop(ParseHeads),
	"loop-scan": startLoop(ScanHeads),
}

func startLoop(heads Heads) func(t *testing.T, upstream string) string {
	return func(t *testing.T, upstream string) string {
		ln := listen(t)
		stop, done := make(chan struct{}), make(chan error, 1)
		go func() { done <- Loop(ln, upstream, heads, stop) }()
		t.Cleanup(func() {
			close(stop)
			if err := <-done; err != nil {
				t.Errorf("Loop: %v", err)
			}
		})
		return ln.Addr().String()
	}
}

func listen(t *testing.T) *net.TCPListener {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// app answers /n/<k> with k bytes of 'x' and a Content-Length, and
// /chunked without one; it counts the connections it was sent.
func app(t *testing.T) (*httptest.Server, func() int64) {
	var mu sync.Mutex
	var conns int64
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(100 * time.Millisecond)
		}
		if r.URL.Path == "/chunked" {
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
			return
		}
		var n int
		fmt.Sscanf(r.URL.Path, "/n/%d", &n)
		w.Header().Set("X-Path", r.URL.Path)
		w.Header().Set("X-Seen-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("Content-Length", fmt.Sprint(n))
		w.Write([]byte(strings.Repeat("x", n)))
	}))
	s.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, func() int64 {
		mu.Lock()
		defer mu.Unlock()
		return conns
	}
}

// TestForwardsKeepAlive sends requests over several keep-alive
// connections (some pipelined) through each mode and checks every answer
// arrives whole, in order, for the request that asked for it.
func TestForwardsKeepAlive(t *testing.T) {
	for name, start := range modes {
		t.Run(name, func(t *testing.T) {
			s, conns := app(t)
			addr := start(t, s.Listener.Addr().String())
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					br := bufio.NewReader(c)
					for i := 0; i < 50; i++ {
						// Two requests in one write: the second is pipelined.
						a, b := 100+i+w, 70000+i
						fmt.Fprintf(c, "GET /n/%d HTTP/1.1\r\nHost: a\r\n\r\nGET /n/%d HTTP/1.1\r\nHost: a\r\n\r\n", a, b)
						for _, n := range []int{a, b} {
							res, err := http.ReadResponse(br, nil)
							if err != nil {
								t.Errorf("answer for /n/%d: %v", n, err)
								return
							}
							body, err := io.ReadAll(res.Body)
							if xff := res.Header.Get("X-Seen-Forwarded-For"); (xff == "127.0.0.1") != strings.HasPrefix(name, "loop-") {
								t.Errorf("the app saw X-Forwarded-For %q (only the loops that rewrite heads add it)", xff)
							}
							if err != nil || len(body) != n || res.Header.Get("X-Path") != fmt.Sprintf("/n/%d", n) {
								t.Errorf("answer for /n/%d: %d bytes, X-Path %q, %v", n, len(body), res.Header.Get("X-Path"), err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			if n := conns(); n != 4 {
				t.Errorf("app saw %d connections, want one per client connection (4)", n)
			}
		})
	}
}

// TestClosesWhatItCannotFrame: a request with a body and an answer
// without a Content-Length close the connection instead of hanging or
// passing on something the instrument did not frame.
func TestClosesWhatItCannotFrame(t *testing.T) {
	for name, start := range modes {
		for _, req := range []string{
			"POST /n/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
			"POST /n/1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n",
			"GET /n/1 HTTP/1.1\r\nX: " + strings.Repeat("y", maxHead) + "\r\n\r\n",
		} {
			t.Run(name, func(t *testing.T) {
				c := dialThrough(t, start)
				go io.WriteString(c, req)
				got, err := io.ReadAll(c)
				if err != nil && !errors.Is(err, syscall.ECONNRESET) { // closed with the head unread: RST
					t.Fatalf("%.40q: want the connection closed, got %v", req, err)
				}
				if len(got) != 0 {
					t.Errorf("%.40q: want nothing forwarded back, got %q", req, got)
				}
			})
		}
	}
}

// dialThrough starts a forwarder in front of a fresh app and connects to
// it; the connection closes with the test and fails any I/O after 10 s.
func dialThrough(t *testing.T, start func(*testing.T, string) string) net.Conn {
	s, _ := app(t)
	c, err := net.Dial("tcp", start(t, s.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// TestPipelinedWhileAnswering: a request that arrives, in a read of its
// own, while the one before it is still being answered, is answered too
// (a forwarder that parks on the client without reading first would miss
// its wake-up and hang).
func TestPipelinedWhileAnswering(t *testing.T) {
	for name, start := range modes {
		t.Run(name, func(t *testing.T) {
			c := dialThrough(t, start)
			io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
			time.Sleep(30 * time.Millisecond)
			io.WriteString(c, "GET /n/5 HTTP/1.1\r\nHost: a\r\n\r\n")
			br := bufio.NewReader(c)
			for _, want := range []string{"/slow", "/n/5"} {
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("answer for %s: %v", want, err)
				}
				io.Copy(io.Discard, res.Body)
				if got := res.Header.Get("X-Path"); got != want {
					t.Errorf("answer for %s has X-Path %q", want, got)
				}
			}
		})
	}
}

// TestHead: the forwarders that rewrite heads answer HEAD (no body after
// a Content-Length); those that pass heads on close instead of waiting
// for a body that never comes.
func TestHead(t *testing.T) {
	for name, start := range modes {
		t.Run(name, func(t *testing.T) {
			c := dialThrough(t, start)
			io.WriteString(c, "HEAD /n/5 HTTP/1.1\r\nHost: a\r\n\r\nGET /n/2 HTTP/1.1\r\nHost: a\r\n\r\n")
			br := bufio.NewReader(c)
			head, _ := http.NewRequest(http.MethodHead, "/n/5", nil)
			res, err := http.ReadResponse(br, head)
			if !strings.HasPrefix(name, "loop-") {
				if err == nil {
					t.Fatalf("HEAD passed on as is: got an answer")
				}
				return
			}
			if err != nil || res.ContentLength != 5 {
				t.Fatalf("HEAD: %v, %v", res, err)
			}
			res, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("the GET after HEAD: %v", err)
			}
			if b, _ := io.ReadAll(res.Body); string(b) != "xx" {
				t.Errorf("the GET after HEAD: body %q", b)
			}
		})
	}
}
