package proxy

import (
	"bufio"
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
