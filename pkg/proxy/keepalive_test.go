package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// kaServer is one daemon's http.Server with its ClientConns, on a
// listener of its own (the socket systemd keeps is not what is tested
// here: the connections already accepted are).
type kaServer struct {
	name   string
	addr   string
	cc     *ClientConns
	srv    *http.Server
	served chan struct{}
}

// echoAs answers every request with its method, path and body, and says
// which server answered in X-Server.
func echoAs(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Server", name)
		_, _ = fmt.Fprintf(w, "%s %s ", r.Method, r.URL.Path)
		_, _ = w.Write(body)
	}
}

// serveKA starts a server named name that takes back the connections in
// resume (parked by an earlier one) and parks in store; h nil echoes.
func serveKA(t *testing.T, name string, store FDStore, resume []*os.File, h http.HandlerFunc) *kaServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc := NewClientConns(store)
	if _, rest := cc.Resume(store, resume); len(rest) > 0 {
		t.Fatalf("Resume left %d files", len(rest))
	}
	if h == nil {
		h = echoAs(name)
	}
	s := &kaServer{name: name, addr: ln.Addr().String(), cc: cc, srv: &http.Server{Handler: h, ConnState: cc.ConnState}, served: make(chan struct{})}
	l := cc.Listener(ln)
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("%s: Serve: %v", name, err)
		}
	}()
	t.Cleanup(func() {
		_ = s.srv.Close()
		<-s.served
	})
	return s
}

// handOver parks s's connections (a restart) and closes s; it returns
// how many were parked.
func (s *kaServer) handOver(t *testing.T) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := s.cc.Stop(ctx, true)
	if err != nil {
		t.Fatalf("%s: Stop: %v", s.name, err)
	}
	_ = s.srv.Close()
	<-s.served
	return n
}

// kaClient is one keep-alive connection written and read by hand, so
// nothing retries or reconnects behind the test's back.
type kaClient struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialKA(t *testing.T, s *kaServer) *kaClient {
	t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// A safety net that turns a lost answer into a failure, not a hang.
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &kaClient{conn: c, br: bufio.NewReader(c)}
}

func request(method, path string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", method, path, len(body))
	b.Write(body)
	return b.Bytes()
}

func (c *kaClient) send(method, path string, body []byte) error {
	_, err := c.conn.Write(request(method, path, body))
	return err
}

// read reads one answer: the server that gave it and its body.
func (c *kaClient) read() (server, body string, err error) {
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return "", "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("%s: %s", res.Status, b)
	}
	return res.Header.Get("X-Server"), string(b), nil
}

// roundTrip sends a request and checks that its echo comes back whole,
// from want ("" for any server); it returns the server.
func (c *kaClient) roundTrip(t *testing.T, method, path string, body []byte, want string) string {
	t.Helper()
	if err := c.send(method, path, body); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return c.expect(t, method, path, body, want)
}

func (c *kaClient) expect(t *testing.T, method, path string, body []byte, want string) string {
	t.Helper()
	server, got, err := c.read()
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if exp := method + " " + path + " " + string(body); got != exp {
		t.Fatalf("%s %s: answer %.60q, want %.60q", method, path, got, exp)
	}
	if want != "" && server != want {
		t.Fatalf("%s %s answered by %q, want %q", method, path, server, want)
	}
	return server
}

// TestIdleKeepAliveHandedOver: an idle keep-alive connection is parked
// in the store at a restart; a POST its client sends while no server
// runs waits in the socket and is answered, byte for byte, by the next
// server, on the same connection, which is gone from the store.
func TestIdleKeepAliveHandedOver(t *testing.T) {
	store := newFDStore(t)
	a := serveKA(t, "A", store, nil, nil)
	c := dialKA(t, a)
	c.roundTrip(t, "GET", "/1", nil, "A")
	if n := a.handOver(t); n != 1 {
		t.Fatalf("parked %d connections, want 1", n)
	}
	names := store.names()
	if len(names) != 1 || !strings.HasPrefix(names[0], clientStorePrefix) {
		t.Fatalf("store holds %q, want one %s name", names, clientStorePrefix)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB: more than any buffer
	if err := c.send("POST", "/2", body); err != nil {
		t.Fatal(err)
	}
	b := serveKA(t, "B", store, store.listen(t), nil)
	c.expect(t, "POST", "/2", body, "B")
	if names := store.names(); len(names) != 0 {
		t.Errorf("store after the resume: %q, want empty", names)
	}
	c.roundTrip(t, "GET", "/3", nil, "B")
	_ = b
}

// TestInFlightRequestFinishesThenParks: a request running when the
// restart begins finishes on the old server and its answer goes out;
// only then is its connection parked, and the next request goes to the
// next server.
func TestInFlightRequestFinishesThenParks(t *testing.T) {
	store := newFDStore(t)
	entered, release := make(chan struct{}), make(chan struct{})
	a := serveKA(t, "A", store, nil, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		echoAs("A")(w, r)
	})
	c := dialKA(t, a)
	if err := c.send("POST", "/slow", []byte("payload")); err != nil {
		t.Fatal(err)
	}
	<-entered
	parked := make(chan int64, 1)
	go func() { parked <- a.handOver(t) }()
	select {
	case n := <-parked:
		t.Fatalf("hand-over ended (%d parked) while a request ran", n)
	case <-time.After(50 * time.Millisecond): // not a sync: a check that it waits
	}
	close(release)
	c.expect(t, "POST", "/slow", []byte("payload"), "A")
	if n := <-parked; n != 1 {
		t.Fatalf("parked %d, want 1", n)
	}
	serveKA(t, "B", store, store.listen(t), nil)
	c.roundTrip(t, "GET", "/next", nil, "B")
}

// TestPartlyReadRequestIsServedBeforeParking: when the old server has
// read part of the next request already (the client pipelined it, or
// sent its first bytes as the last answer went out), that request is
// answered by the old server, and the connection is parked after it.
// Parking it then would lose the bytes read.
func TestPartlyReadRequestIsServedBeforeParking(t *testing.T) {
	for _, tc := range []struct {
		name  string
		early int // bytes of the second request sent with the first
	}{
		{"two bytes", 2},
		{"whole request", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newFDStore(t)
			entered, release := make(chan struct{}), make(chan struct{})
			a := serveKA(t, "A", store, nil, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/slow" {
					close(entered)
					<-release
				}
				echoAs("A")(w, r)
			})
			c := dialKA(t, a)
			second := request("POST", "/second", []byte("body of the second"))
			early := len(second)
			if tc.early >= 0 {
				early = tc.early
			}
			if _, err := c.conn.Write(append(request("GET", "/slow", nil), second[:early]...)); err != nil {
				t.Fatal(err)
			}
			<-entered
			parked := make(chan int64, 1)
			go func() { parked <- a.handOver(t) }()
			close(release)
			c.expect(t, "GET", "/slow", nil, "A")
			if _, err := c.conn.Write(second[early:]); err != nil {
				t.Fatal(err)
			}
			c.expect(t, "POST", "/second", []byte("body of the second"), "A")
			if n := <-parked; n != 1 {
				t.Fatalf("parked %d, want 1", n)
			}
			serveKA(t, "B", store, store.listen(t), nil)
			c.roundTrip(t, "GET", "/third", nil, "B")
		})
	}
}

// TestNoRequestLostAcrossHandOvers: clients send GETs and POSTs back to
// back on keep-alive connections while the server is handed over, again
// and again: every request is answered exactly once, whole, and no
// connection is closed. This is the race of a request sent just as its
// idle connection is taken away.
func TestNoRequestLostAcrossHandOvers(t *testing.T) {
	store := newFDStore(t)
	srv := serveKA(t, "S0", store, nil, nil)
	const clients = 8
	stop := make(chan struct{})
	var wg sync.WaitGroup
	counts := make([]map[string]int, clients)
	for i := range clients {
		c := dialKA(t, srv)
		counts[i] = map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				method, body := "GET", []byte(nil)
				if n%2 == 1 {
					method, body = "POST", bytes.Repeat([]byte{byte('a' + n%26)}, rand.IntN(20000))
				}
				path := fmt.Sprintf("/c%d/r%d", i, n)
				if err := c.send(method, path, body); err != nil {
					t.Errorf("client %d, request %d: %v", i, n, err)
					return
				}
				server, got, err := c.read()
				if err != nil {
					t.Errorf("client %d, request %d (%s %s): %v", i, n, method, path, err)
					return
				}
				if exp := method + " " + path + " " + string(body); got != exp {
					t.Errorf("client %d, request %d: answer %.40q, want %.40q", i, n, got, exp)
					return
				}
				counts[i][server]++
			}
		}()
	}
	for gen := 1; gen <= 5; gen++ {
		time.Sleep(20 * time.Millisecond) // let requests flow: the load, not a sync
		srv.handOver(t)
		srv = serveKA(t, fmt.Sprintf("S%d", gen), store, store.listen(t), nil)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	for i, m := range counts {
		if len(m) < 2 {
			t.Errorf("client %d was served by %v only; want several servers", i, m)
		}
	}
}

// TestRequestHalfReadAtStopIsAnswered: a request whose head the server
// has begun to read when the stop begins is read to its end and
// answered, and only then is its connection ended (closed: a stop).
// http.Server.Shutdown drops such a request without an answer once it
// finishes reading it: the lane's rare failed request across a restart.
func TestRequestHalfReadAtStopIsAnswered(t *testing.T) {
	a := serveKA(t, "A", nil, nil, nil)
	c := dialKA(t, a)
	req := request("POST", "/half", []byte("the body"))
	if _, err := c.conn.Write(req[:10]); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the server read the first bytes", func() bool {
		a.cc.mu.Lock()
		defer a.cc.mu.Unlock()
		for w := range a.cc.conns {
			if w.phase.Load() == phaseActive {
				return true
			}
		}
		return false
	})
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := a.cc.Stop(ctx, true) // no store: ends by closing
		stopped <- err
	}()
	if _, err := c.conn.Write(req[10:]); err != nil {
		t.Fatal(err)
	}
	c.expect(t, "POST", "/half", []byte("the body"), "A")
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: %v, want the connection closed (EOF)", err)
	}
}

// TestRequestArrivingAsTheWakeFallsIsAnswered: Stop decides to park an
// idle connection whose Read waits at a request boundary, and wakes that
// Read with a deadline in the past; the client's next request arrives
// exactly in between, so the Read returns its first bytes instead of the
// timeout. Those bytes must not be dropped (parked without them, the next
// server would read half a request): the old server reads that request
// to its end under net/http's own deadline, not the wake's, answers it,
// and parks the connection at the next boundary. Two bytes are fewer than
// net/http's first look at a request (Peek(4)), so its next Read comes
// before it sets any deadline of its own.
func TestRequestArrivingAsTheWakeFallsIsAnswered(t *testing.T) {
	for _, early := range []int{2, 20} {
		t.Run(fmt.Sprintf("%d bytes", early), func(t *testing.T) {
			store := newFDStore(t)
			a := serveKA(t, "A", store, nil, nil)
			c := dialKA(t, a)
			c.roundTrip(t, "GET", "/1", nil, "A")
			req := request("POST", "/2", []byte("arrived as the deadline fell"))
			woken := make(chan struct{})
			a.cc.betweenWake = func(w *clientConn) {
				defer close(woken)
				if _, err := c.conn.Write(req[:early]); err != nil {
					t.Error(err)
					return
				}
				// The waiting Read took them: the socket holds nothing.
				testutil.Eventually(t, "the server read the early bytes", func() bool { return unread(t, w) == 0 })
			}
			testutil.Eventually(t, "the connection waits at its boundary", func() bool {
				a.cc.mu.Lock()
				defer a.cc.mu.Unlock()
				for w := range a.cc.conns {
					if w.phase.Load() == phaseWaiting {
						return true
					}
				}
				return false
			})
			parked := make(chan int64, 1)
			go func() { parked <- a.handOver(t) }()
			<-woken
			if _, err := c.conn.Write(req[early:]); err != nil {
				t.Fatal(err)
			}
			c.expect(t, "POST", "/2", []byte("arrived as the deadline fell"), "A")
			if n := <-parked; n != 1 {
				t.Fatalf("parked %d, want 1", n)
			}
			serveKA(t, "B", store, store.listen(t), nil)
			c.roundTrip(t, "GET", "/3", nil, "B")
		})
	}
}

// unread returns how many bytes wait in the socket of w, unread.
func unread(t *testing.T, w *clientConn) int {
	const siocinq = 0x541B // FIONREAD on a TCP socket
	n := -1
	if err := w.rc.Control(func(fd uintptr) {
		var v int32
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, siocinq, uintptr(unsafe.Pointer(&v))); errno == 0 {
			n = int(v)
		}
	}); err != nil {
		t.Error(err)
	}
	return n
}
