package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// appPair is a pconn to a raw TCP peer, which the test drives.
func appPair(t *testing.T) (*pconn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tr := &fastTransport{addr: ln.Addr().String(), dialer: &net.Dialer{}}
	pc, err := tr.dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	app, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.conn.Close(); app.Close() })
	if pc.rc == nil {
		t.Fatal("a TCP pconn has no RawConn: sendAndWait would not wait")
	}
	return pc, app
}

// TestSendAndWaitAnswerRace: an app that answers the instant the head
// arrives must never be missed (the answer may come before the goroutine
// parks); 2000 round trips on one connection, each bounded.
func TestSendAndWaitAnswerRace(t *testing.T) {
	pc, app := appPair(t)
	go func() {
		br := bufio.NewReader(app)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if _, err := io.WriteString(app, "HTTP/1.1 204 No Content\r\nX-Path: "+req.URL.Path+"\r\n\r\n"); err != nil {
				return
			}
		}
	}()
	req, _ := http.NewRequest(http.MethodGet, "http://app/x", nil)
	for i := 0; i < 2000; i++ {
		_ = pc.conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // a lost wake-up fails, not hangs
		if err := pc.sendAndWait(req, headWhole); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		res, err := readFinalResponse(pc.br, req, nil)
		if err != nil || res.Header.Get("X-Path") != "/x" {
			t.Fatalf("round %d: %v %v", i, res, err)
		}
	}
}

// TestSendAndWaitUnsent: with the client already gone (a deadline in the
// past) nothing is written and the error says so; the app sees no byte.
func TestSendAndWaitUnsent(t *testing.T) {
	pc, app := appPair(t)
	_ = pc.conn.SetDeadline(aLongTimeAgo)
	req, _ := http.NewRequest(http.MethodGet, "http://app/", nil)
	if err := pc.sendAndWait(req, headWhole); err == nil {
		t.Fatal("no error with a deadline in the past")
	}
	_ = app.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _ := app.Read(make([]byte, 64)); n != 0 {
		t.Fatalf("the app received %d bytes of a head reported unsent", n)
	}
}

// TestSendAndWaitDeadline: the wait for an answer that never comes ends at
// the read deadline (the head timeout, a client leaving), with the head
// sent; the read after it reports the timeout.
func TestSendAndWaitDeadline(t *testing.T) {
	pc, app := appPair(t)
	_ = pc.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	req, _ := http.NewRequest(http.MethodGet, "http://app/", nil)
	if err := pc.sendAndWait(req, headWhole); err != nil {
		t.Fatalf("the head was sent, yet: %v", err)
	}
	if _, err := pc.br.Peek(1); err == nil {
		t.Fatal("the read after the wait succeeded without an answer")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("want a timeout, got %v", err)
	}
	if _, err := http.ReadRequest(bufio.NewReader(app)); err != nil {
		t.Fatalf("the app did not get the head: %v", err)
	}
}

// TestHalfClosedPooledConnectionIsReplaced: an app that half-closes an
// idle keep-alive connection (FIN, and it goes on reading: Apache's
// lingering close) sends nothing that would wake a wait for an answer.
// The FIN may come after the connection left the pool: it must still be
// seen before the request is written (exchange fails at once, as unsent,
// rather than at the head timeout), and the request then goes on another
// connection, for any method.
func TestHalfClosedPooledConnectionIsReplaced(t *testing.T) {
	halfClose := make(chan struct{})
	addr := serveConns(t, func(n int, c net.Conn) func() {
		return func() {
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"+req.URL.Path[1:3])
				if n == 1 {
					<-halfClose
					_ = c.(*net.TCPConn).CloseWrite()
					_, _ = io.Copy(io.Discard, c) // lingering: reads and drops what comes
					return
				}
			}
		}
	})
	p, _, _ := newProxy(t)
	f := newFastTransport(addr, p.dialer, p.transport, 8, time.Hour, p.buffers, nil)
	f.headTimeout = 30 * time.Second // the regression: this long, then a 504
	t.Cleanup(f.closeIdle)
	roundTrip := func(method, path string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://app"+path, nil)
		res, err := f.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(body) != path[1:3] {
			t.Fatalf("%s %s: body %q", method, path, body)
		}
	}
	roundTrip(http.MethodGet, "/r1") // connection 1, pooled

	pc, reused, err := f.get(t.Context()) // taken from the pool, then the app half-closes
	if err != nil || !reused {
		t.Fatalf("get: %v, reused %v", err, reused)
	}
	close(halfClose)
	for deadline := time.Now().Add(5 * time.Second); pc.idleState() != idleClosed; {
		if time.Now().After(deadline) {
			t.Fatal("the FIN never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://app/r2", nil)
	_, err = f.exchange(pc, req, headWhole, false, nil)
	var ue *unservedError
	if !errors.As(err, &ue) || !ue.unsent || pc.stale != idleClosed {
		t.Fatalf("exchange on the half-closed connection: %v (stale %d), want unsent at once", err, pc.stale)
	}
	f.idle <- pc // back in the pool, as if put there half-closed

	// Through the pool: a POST (never sent twice) goes on a new
	// connection, as the stale one never carried it.
	roundTrip(http.MethodPost, "/r3")
}
