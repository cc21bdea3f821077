package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rollbridge/rollbridge-go/internal/h1"
)

// Loop is the event-loop request path of issue #17 (docs/performance.md,
// "The event loop"): a few locked OS threads, each with its own epoll
// instance, serve the plain case, a body-less GET that h1.ScanRequest
// calls Fast, routed to the one active backend, answered with a
// Content-Length that h1.ScanResponse calls Fast, with no goroutine per
// connection and no allocation per request. Everything else goes to the
// net/http path with the bytes already read (handoff.go); the net/http
// server's ClientConns gives the connection back at its next request
// boundary (ReturnTo).
//
// The loop takes a request only while the proxy routes plainly: no pause
// or maintenance, no hold, no canary, no observer that reads the request
// (the access log; the metrics are a ResultObserver), and not the host
// health path. What it sends the app and the client is what the net/http
// path sends (appendAppHead, appendClientHead and their differential
// tests).
//
// Each thread owns its connections outright (nothing of one thread's is
// touched by another, so the hot path takes no lock); they share the
// listener, which each one's epoll watches with EPOLLEXCLUSIVE, so a new
// connection wakes one thread, not all of them.
type Loop struct {
	p        *Proxy
	ln       *net.TCPListener
	handoff  *handoffListener
	accepted func()
	threads  []*loopThread
	// With several threads the listener is watched with EPOLLEXCLUSIVE and
	// a thread accepts at most acceptBatch connections per wake-up (0: no
	// bound); with one, neither matters.
	exclusive   uint32
	acceptBatch int
	stopping    atomic.Bool
	// closing is Close: end every connection now.
	closing atomic.Bool
	done    chan struct{}
}

// loopThread is one of the loop's threads: an epoll instance and the
// connections in it.
type loopThread struct {
	*Loop
	lfd  int    // the listener; -1 once the thread stopped taking connections
	ep   int    // the epoll instance
	wake [2]int // a pipe: Stop and take write, the thread reads
	// served counts the requests the thread answered, handed the
	// connections it gave the net/http path.
	served, handed atomic.Uint64
	// back holds the descriptors of connections the net/http path gives
	// back (take) until the thread adds them. backMu also guards the
	// wake pipe's life (fdsClosed).
	backMu    sync.Mutex
	back      []backConn
	fdsClosed bool

	// load is clients and the descriptors in back, for the other threads
	// to read (leastLoaded): a hint, set when clients changes.
	load atomic.Int32
	// dead: the thread's wait failed and it ended; set under backMu.
	dead atomic.Bool

	// Owned by the thread.
	conns   map[int]*lconn
	clients int
	idle    map[*Backend][]*lconn
	addrs   map[*Backend]unix.Sockaddr
	rbuf    []byte
	rh      h1.RequestHead
	ah      h1.ResponseHead
	date    []byte
	dateSec int64
	swept   time.Time
	waits   int // the waits that returned: an idle thread's are few (TestLoopIdleWakeUps)
	poolMax int // idle app connections kept per backend: the proxy's limit, shared among the threads
	// acceptPaused: the listener is out of the epoll set until
	// acceptAgain, after accept failed for want of descriptors.
	acceptPaused bool
	acceptAgain  time.Time
}

// Limits of what the loop holds for one connection; beyond them it hands
// the connection off.
const (
	loopMaxHead = 16 << 10  // a request or answer head
	loopMaxBody = 256 << 10 // an answer's body, held whole before it is written
	loopIdle    = 120 * time.Second
	loopAppIdle = 90 * time.Second
	loopLinger  = 500 * time.Millisecond // as net/http's rstAvoidanceDelay
	// loopMaxBounces caps lconn.bounces: a connection that keeps being
	// handed off stays on net/http for up to 2^6-1 boundaries at a time.
	loopMaxBounces = 7
	// loopBusyWait (ms) is how long a raw wait lasts (see wait).
	loopBusyWait = 10
	// loopAcceptBatch bounds the connections a thread accepts per wake-up
	// when there are several: the listener stays ready for the rest, so a
	// burst of connections is spread over the threads, not all taken by
	// the one that woke first.
	loopAcceptBatch = 8
)

// loopHead is how long a client may take to send a head, from its first
// byte: the daemon's ReadHeaderTimeout, and like net/http the loop then
// closes the connection. A variable for the tests.
var loopHead = 30 * time.Second

// lconn is one socket of the loop: a client's, or an app connection.
type lconn struct {
	fd    int
	app   bool
	since time.Time // when the current state began (timeouts)

	// A client's.
	ip       string
	in       []byte // read, not yet served; the request being served stays in front
	out      []byte // answer bytes not yet written
	state    int
	up       *lconn
	backend  *Backend
	n        *atomic.Int64
	headLen  int
	minor    int
	reused   bool // up came from the pool
	retried  bool // the request was sent a second time (after a pooled connection failed)
	epoch    *epoch
	readStop bool // reading paused: in is full
	// closeAfter: the request being served asked to close the connection
	// after its answer (h1.RequestHead.Close).
	closeAfter bool
	// bounces counts the connection's hand-offs in a row with no request
	// served here between them (clientConn.backTo).
	bounces uint8
	// fresh: accepted, and no request of it answered yet.
	fresh bool

	// An app connection's.
	client     *lconn
	b          *Backend
	ans        []byte // answer bytes read
	send       []byte // head bytes not yet written
	wrote      bool   // some of the head was written
	connecting bool
}

const (
	stIdle    = iota // reading the next request
	stWaiting        // the request is sent; waiting for the answer
	stWriting        // the answer is being written
	stLinger         // the last answer is written; waiting for the client to close (linger)
)

// NewLoop makes a loop of threads threads (at least one) for ln, which it
// takes connections from (it does not close ln). accepted, if set, is
// called for every connection taken. Serve the net/http server on
// Listener (through ClientConns): it yields the connections the loop
// gives up.
func (p *Proxy) NewLoop(ln net.Listener, threads int, accepted func()) (*Loop, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, errors.New("the event loop needs a TCP listener")
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	lfd := -1
	if err := rc.Control(func(fd uintptr) { lfd = int(fd) }); err != nil {
		return nil, err
	}
	// Accepted sockets inherit SO_LINGER from the listener, and with it
	// set a close blocks until the unsent data is out or the time is up:
	// the loop's raw close (rawClose) would hold its P meanwhile. Nothing
	// here sets it, but an inherited listener (socket activation, the fd
	// store) may come with it.
	if lg, err := unix.GetsockoptLinger(lfd, unix.SOL_SOCKET, unix.SO_LINGER); err == nil && lg.Onoff != 0 {
		if err := unix.SetsockoptLinger(lfd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{}); err != nil {
			return nil, fmt.Errorf("the event loop needs a listener without SO_LINGER: %w", err)
		}
	}
	l := &Loop{p: p, ln: tl, accepted: accepted, done: make(chan struct{}), handoff: newHandoffListener(ln.Addr())}
	if threads > 1 {
		l.exclusive, l.acceptBatch = unix.EPOLLEXCLUSIVE, loopAcceptBatch
	}
	for range max(threads, 1) {
		t, err := newLoopThread(l, lfd, max(threads, 1))
		if err != nil {
			for _, t := range l.threads {
				t.closeFDs()
			}
			return nil, err
		}
		l.threads = append(l.threads, t)
	}
	p.loops.Store(true)
	return l, nil
}

func newLoopThread(l *Loop, lfd, threads int) (*loopThread, error) {
	t := &loopThread{Loop: l, lfd: lfd, conns: map[int]*lconn{}, idle: map[*Backend][]*lconn{},
		addrs: map[*Backend]unix.Sockaddr{}, rbuf: make([]byte, 64<<10), poolMax: max(1, l.p.maxIdle/threads)}
	var err error
	if t.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, err
	}
	if err := unix.Pipe2(t.wake[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		unix.Close(t.ep)
		return nil, err
	}
	if err := unix.EpollCtl(t.ep, unix.EPOLL_CTL_ADD, t.wake[0], &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(t.wake[0])}); err != nil {
		t.closeFDs()
		return nil, err
	}
	if err := t.watchListener(); err != nil {
		t.closeFDs()
		return nil, err
	}
	return t, nil
}

// watchListener adds the listener to the thread's epoll set.
func (l *loopThread) watchListener() error {
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, l.lfd, &unix.EpollEvent{Events: unix.EPOLLIN | l.exclusive, Fd: int32(l.lfd)})
}

// Listener yields the connections the loop gives up, for the net/http
// server.
func (l *Loop) Listener() net.Listener { return l.handoff }

// closeFDs closes the thread's own descriptors. The wake pipe closes
// under backMu, so Stop and take never write to a number reused since.
func (l *loopThread) closeFDs() {
	unix.Close(l.ep)
	l.backMu.Lock()
	l.fdsClosed = true
	unix.Close(l.wake[0])
	unix.Close(l.wake[1])
	l.backMu.Unlock()
}

// poke wakes the thread; the caller holds backMu. The wake pipe is
// non-blocking (a full pipe wakes the thread as well), so the write is
// raw, as rawIO.
func (l *loopThread) poke() {
	if !l.fdsClosed {
		_, _ = rawIO(unix.SYS_WRITE, l.wake[1], wakeByte[:])
	}
}

var wakeByte = [1]byte{0}

// signal sets stopping (and closing, for Close) and wakes every thread,
// holding every thread's backMu: a take either sees stopping or queued
// its descriptor before, for its thread to hand off.
func (l *Loop) signal(closing bool) {
	for _, t := range l.threads {
		t.backMu.Lock()
	}
	l.stopping.Store(true)
	if closing {
		l.closing.Store(true)
	}
	for _, t := range l.threads {
		t.poke()
		t.backMu.Unlock()
	}
}

// Stop makes the loop take no new connection and give every one it has to
// the net/http path at its next request boundary; Run returns once none
// is left. Wait on Done.
func (l *Loop) Stop() { l.signal(false) }

// Close ends the loop at once: every connection it holds is closed, the
// requests in them cut off (what http.Server.Close does to its own). For
// a stop whose grace period ran out; Stop first.
func (l *Loop) Close() { l.signal(true) }

// WaitHandedOff waits until net/http accepted every connection the loop
// handed off (or ctx ends): a stop must not close the hand-off listener
// over connections that would have been parked or served.
//
// Accepted is not enough: net/http registers a connection with
// ClientConns after its Accept, and ClientConns.Stop waits only for the
// ones registered, so a request handed over pending could be cut off by
// the server's Close. A connection's first Read comes after that.
func (l *Loop) WaitHandedOff(ctx context.Context) {
	for l.handoff.unread.Load() > 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
}

// Stats returns how many requests the loop answered itself and how many
// connections it gave the net/http path, since NewLoop.
func (l *Loop) Stats() (served, handedOff uint64) {
	for _, t := range l.threads {
		served += t.served.Load()
		handedOff += t.handed.Load()
	}
	return served, handedOff
}

// Threads is how many threads the loop runs.
func (l *Loop) Threads() int { return len(l.threads) }

// Done is closed when Run has returned.
func (l *Loop) Done() <-chan struct{} { return l.done }

// Run serves until Stop, each thread on a locked thread of its own, and
// returns when every thread has (the first error of any). The process
// needs GOMAXPROCS of at least one more than the threads: a busy thread
// keeps its P between events (wait).
func (l *Loop) Run() error {
	defer close(l.done)
	errs := make(chan error, len(l.threads))
	for _, t := range l.threads {
		go func() { errs <- t.run() }()
	}
	var first error
	for range l.threads {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (l *loopThread) run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer l.closeFDs()
	evs := make([]unix.EpollEvent, 256)
	l.swept = time.Now()
	quiet := false
	for {
		r, e := l.wait(evs, quiet)
		l.waits++
		if e != 0 && e != unix.EINTR {
			// Cannot happen with a valid epoll descriptor. The thread
			// takes nothing more (give), releases what it holds, and
			// says so now; the other threads go on.
			l.backMu.Lock()
			l.dead.Store(true)
			l.backMu.Unlock()
			l.closeAll()
			if l.p.onError != nil {
				l.p.onError("", fmt.Errorf("an event loop thread stopped (%w): it closed its connections; the other threads serve on", e))
			}
			return e
		}
		quiet = e != 0 || r == 0
		if quiet {
			r = 0 // EINTR: r is -1
			runtime.Gosched()
		}
		for _, ev := range evs[:r] {
			switch fd := int(ev.Fd); fd {
			case l.wake[0]:
				l.drainWake()
			case l.lfd:
				l.accept()
			default:
				if c := l.conns[fd]; c != nil {
					l.event(c, ev.Events)
				}
			}
		}
		if l.closing.Load() {
			l.closeAll()
			return nil
		}
		if l.acceptPaused && time.Now().After(l.acceptAgain) {
			l.resumeAccept()
		}
		if now := time.Now(); now.Sub(l.swept) >= time.Second || l.stopping.Load() {
			if l.stopping.Load() {
				l.drainWake() // connections given back before the stop are handed off below
			}
			l.sweep(now)
			if l.stopping.Load() && l.clients == 0 {
				for _, list := range l.idle {
					for _, u := range list {
						l.closeConn(u)
					}
				}
				return nil
			}
		}
	}
}

// wait waits for events. While they come it waits raw (see bench/floor's
// loop): the runtime does not take the P back every 20 µs, as it does
// from a thread in a system call. A raw wait ends after loopBusyWait,
// sooner on EINTR (a preemption signal: the runtime preempts a goroutine
// it sees running for 10 ms, and the raw wait looks like one), to let the
// runtime in. Once a wait found nothing (quiet), the thread waits as an
// ordinary system call instead, for as long as its timeouts allow
// (forever when it holds nothing): an idle daemon's loop takes no CPU
// and makes no wake-ups, and its P serves the rest of the daemon.
func (l *loopThread) wait(evs []unix.EpollEvent, quiet bool) (int, unix.Errno) {
	if !quiet {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), loopBusyWait, 0, 0)
		return int(r), e
	}
	ms := -1
	switch {
	case l.acceptPaused:
		ms = 10
	case l.stopping.Load():
		ms = 100
	case len(l.conns) > 0:
		ms = max(1, int(time.Second-time.Since(l.swept))/int(time.Millisecond)) // the next sweep
	}
	n, err := unix.EpollWait(l.ep, evs, ms)
	if err != nil {
		if en, ok := err.(unix.Errno); ok {
			return -1, en
		}
		return -1, unix.EIO // not an errno: cannot happen
	}
	return n, 0
}

func (l *loopThread) drainWake() {
	var b [16]byte
	for {
		if n, _ := rawIO(unix.SYS_READ, l.wake[0], b[:]); n <= 0 {
			break
		}
	}
	if l.stopping.Load() && l.lfd >= 0 {
		if !l.acceptPaused {
			_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.lfd, nil)
		}
		l.lfd = -1
	}
	l.backMu.Lock()
	back := l.back
	l.back = nil
	l.backMu.Unlock()
	for _, b := range back {
		if b.peer != nil { // accepted by another thread: non-blocking, peer known
			l.addClient(b.fd, b.peer, b.bounces, b.fresh)
			continue
		}
		sa, err := unix.Getpeername(b.fd)
		if err != nil || unix.SetNonblock(b.fd, true) != nil {
			unix.Close(b.fd) // the client is gone already
			l.load.Store(int32(l.clients))
			continue
		}
		l.addClient(b.fd, sa, b.bounces, b.fresh)
	}
}

// backConn is a connection queued for a thread (give): its descriptor,
// and its hand-offs in a row (lconn.bounces).
type backConn struct {
	fd      int
	bounces uint8
	fresh   bool // accepted by another thread, not given back by net/http
	// peer is the client's address when another thread accepted it
	// (accept4 made it non-blocking already); nil when net/http gave the
	// connection back.
	peer unix.Sockaddr
}

// addClient takes in a client's connection and serves what it sent.
func (l *loopThread) addClient(fd int, peer unix.Sockaddr, bounces uint8, fresh bool) {
	rawNoDelay(fd)
	c := &lconn{fd: fd, since: time.Now(), ip: peerIP(peer), bounces: bounces, fresh: fresh}
	if err := l.add(c); err != nil {
		unix.Close(fd)
		l.load.Store(int32(l.clients)) // give counted it
		return
	}
	l.clients++
	l.load.Store(int32(l.clients))
	l.readClient(c, false)
}

// take queues fd, a client connection the net/http path gives back at a
// request boundary, for the loop; false (fd not taken) once stopping.
//
// While the loop cannot serve (loopServes: the access log is on, a canary
// runs, the proxy holds or pauses) it refuses, and the connection stays
// on the net/http path: taken, its next request would only come straight
// back, at the cost of a descriptor copy, a wake-up and a new net/http
// connection each time. It is offered again at the next boundary.
func (l *Loop) take(fd int, bounces uint8) bool {
	if !l.p.loopServes(l.p.route.Load()) {
		return false
	}
	t := l.leastLoaded(nil)
	return t != nil && t.give(backConn{fd: fd, bounces: bounces})
}

// resumeAccept puts the listener back after a pause.
func (l *loopThread) resumeAccept() {
	l.acceptPaused = false
	if l.lfd >= 0 && !l.stopping.Load() {
		if l.watchListener() != nil {
			// Try again later rather than stop taking connections.
			l.acceptPaused, l.acceptAgain = true, time.Now().Add(time.Second)
			return
		}
		l.accept()
	}
}

// closeAll closes every connection the loop holds, ending their counts,
// and the descriptors given back and not yet taken in.
func (l *loopThread) closeAll() {
	for _, c := range l.conns {
		if !c.app {
			if u := c.up; u != nil {
				l.closeConn(u)
			}
			l.release(c)
		}
		l.closeConn(c)
	}
	l.backMu.Lock()
	back := l.back
	l.back = nil
	l.backMu.Unlock()
	for _, b := range back {
		unix.Close(b.fd)
	}
}

// accept takes the pending connections, up to acceptBatch.
func (l *loopThread) accept() {
	for i := 0; l.acceptBatch == 0 || i < l.acceptBatch; i++ {
		fd, sa, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch err {
			case unix.EINTR, unix.ECONNABORTED:
				continue
			case unix.EAGAIN:
			default:
				// EMFILE and the like leave the connection queued and the
				// listener ready: take it out of the set for a while
				// rather than spin, or sleep on the loop's thread.
				_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.lfd, nil)
				l.acceptPaused, l.acceptAgain = true, time.Now().Add(10*time.Millisecond)
			}
			return
		}
		if l.accepted != nil {
			l.accepted()
		}
		if t := l.leastLoaded(l); t != l && t.give(backConn{fd: fd, fresh: true, peer: sa}) {
			continue
		}
		l.addClient(fd, sa, 0, true)
	}
}

// leastLoaded is the thread with the fewest clients; self (nil for none),
// unless another has at least two fewer. The kernel wakes the first idle
// thread for a new connection (EPOLLEXCLUSIVE), so under light load one
// thread would take every connection, and keep them: a keep-alive
// connection stays where it was accepted.
func (l *Loop) leastLoaded(self *loopThread) *loopThread {
	best, fewest := self, int32(math.MaxInt32)
	if self != nil {
		fewest = self.load.Load() - 1
	}
	for _, t := range l.threads {
		if n := t.load.Load(); n < fewest && !t.dead.Load() {
			best, fewest = t, n
		}
	}
	return best
}

// give queues fd, a client connection for l, and wakes l; false (fd not
// taken) once stopping, or once l has ended.
func (l *loopThread) give(b backConn) bool {
	l.backMu.Lock()
	defer l.backMu.Unlock()
	if l.stopping.Load() || l.dead.Load() {
		return false
	}
	l.back = append(l.back, b)
	l.load.Add(1) // counted now, or a burst would all go to it
	l.poke()
	return true
}

// peerIP is the client's address as net/http's RemoteAddr gives its host
// part: an IPv4-mapped address in dotted form, an IPv6 zone by name.
func peerIP(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.IP(a.Addr[:]).String()
	case *unix.SockaddrInet6:
		zone := ""
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				zone = ifi.Name
			} else {
				zone = strconv.Itoa(int(a.ZoneId))
			}
		}
		return (&net.IPAddr{IP: net.IP(a.Addr[:]), Zone: zone}).String()
	}
	return ""
}

func (l *loopThread) add(c *lconn) error {
	l.conns[c.fd] = c
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(c.fd)}
	if e := rawEpollCtl(l.ep, unix.EPOLL_CTL_ADD, c.fd, &ev); e != 0 {
		delete(l.conns, c.fd)
		return e
	}
	return nil
}

// forget takes c out of the loop without closing its descriptor.
func (l *loopThread) forget(c *lconn) {
	if l.conns[c.fd] != c {
		return
	}
	_ = rawEpollCtl(l.ep, unix.EPOLL_CTL_DEL, c.fd, nil)
	delete(l.conns, c.fd)
	if !c.app {
		l.clients--
		l.load.Store(int32(l.clients))
	}
}

func (l *loopThread) closeConn(c *lconn) {
	if l.conns[c.fd] == c {
		l.forget(c)
		rawClose(c.fd)
	}
}

func (l *loopThread) event(c *lconn, ev uint32) {
	if c.app {
		if ev&unix.EPOLLOUT != 0 {
			l.appWritable(c)
		}
		if l.conns[c.fd] == c && ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			l.readApp(c, ev&hupEvents != 0)
		}
		return
	}
	if ev&unix.EPOLLOUT != 0 && len(c.out) > 0 {
		l.flushClient(c)
	}
	if l.conns[c.fd] == c && ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.readClient(c, ev&hupEvents != 0)
	}
}

// hupEvents is the events after which a socket is read to its end: a short
// read says nothing then, and no new edge would come for the end.
const hupEvents = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR

// readSome reads once from fd into p: n bytes, 0 when there are none for
// now (EAGAIN); gone at the end of the stream or an error.
func readSome(fd int, p []byte) (n int, gone bool) {
	if len(p) == 0 {
		return 0, false // nothing asked: nothing says the stream ended
	}
	for {
		n, e := rawIO(unix.SYS_READ, fd, p)
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			return 0, false
		case e != 0 || n == 0:
			return 0, true
		}
		return n, false
	}
}

// rawIO is read(2) or write(2) (trap) of p on fd, a non-blocking socket
// or pipe, made as a raw system call: without the runtime's entersyscall
// and exitsyscall around it, which cost about as much as the call itself
// here and tell sysmon a P is in a system call it may take away. Such a
// call never blocks, and a busy loop thread holds its P between events
// anyway (see wait). Every descriptor reaching a loop thread is
// non-blocking: accept4 and socket make them so, drainWake sets it on
// those net/http gives back. n is 0 on an error; an empty p reads or
// writes nothing.
func rawIO(trap uintptr, fd int, p []byte) (n int, e unix.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// rawEpollCtl, rawClose and rawNoDelay are the system calls every new
// connection makes, raw for the same reason as rawIO. None of them
// blocks: close on a socket without SO_LINGER returns at once, and
// NewLoop clears SO_LINGER on the listener, whose sockets inherit it.
func rawEpollCtl(ep, op, fd int, ev *unix.EpollEvent) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(ep), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

func rawClose(fd int) { _, _, _ = unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }

func rawNoDelay(fd int) {
	one := int32(1)
	_, _, _ = unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
}

// readClient reads what the client sent and serves what it can.
// Edge-triggered: it reads until EAGAIN, a short read (the socket was
// empty then; more bytes make a new edge, so the read that would say
// EAGAIN is saved, as nginx does) unless hup, or a full in.
func (l *loopThread) readClient(c *lconn, hup bool) {
	if c.state == stLinger {
		l.discard(c)
		return
	}
	for len(c.in) < loopMaxHead {
		want := min(len(l.rbuf), loopMaxHead-len(c.in))
		n, gone := readSome(c.fd, l.rbuf[:want])
		if gone {
			l.clientGone(c)
			return
		}
		if n == 0 {
			break
		}
		if len(c.in) == 0 && c.state == stIdle {
			c.since = time.Now() // the head timeout runs from its first byte
		}
		c.in = append(c.in, l.rbuf[:n]...)
		if n < want && !hup {
			break
		}
	}
	c.readStop = len(c.in) >= loopMaxHead
	l.serve(c)
}

// clientGone ends a client that closed or broke, and the exchange it was
// waiting on.
func (l *loopThread) clientGone(c *lconn) {
	if u := c.up; u != nil {
		l.closeConn(u) // the app's answer has no one to go to
		c.up = nil
	}
	l.release(c)
	l.closeConn(c)
}

// release ends c's count on its backend, if it holds one.
func (l *loopThread) release(c *lconn) {
	if c.backend != nil {
		c.backend.done(c.n)
		c.backend, c.n = nil, nil
	}
}

// serve takes the next request in c.in, if c is free for one.
func (l *loopThread) serve(c *lconn) {
	if c.state != stIdle || len(c.in) == 0 {
		return
	}
	switch h1.ScanRequest(c.in, loopMaxHead, &l.rh) {
	case h1.NeedMore:
		if c.readStop {
			l.handOff(c, nil)
		}
		return
	case h1.Slow:
		l.handOff(c, nil)
		return
	}
	if string(l.rh.Method.Of(c.in)) != http.MethodGet || l.stopping.Load() {
		// Only GET may be sent again should the app fail.
		l.handOff(c, nil)
		return
	}
	b, n := l.p.loopRoute(l.rh.Target.Of(c.in))
	if b == nil {
		l.handOff(c, nil)
		return
	}
	c.backend, c.n, c.epoch, c.retried = b, n, l.p.epoch.Load(), false
	c.headLen, c.minor, c.closeAfter = l.rh.Len, l.rh.Minor, l.rh.Close
	l.send(c)
}

// send sends c's request (the head at the start of c.in) to its backend,
// on a pooled or new app connection.
func (l *loopThread) send(c *lconn) {
	b := c.backend
	if h1.ScanRequest(c.in, loopMaxHead, &l.rh) != h1.Fast {
		// Cannot happen: c.in is cut only after the answer. Should it,
		// the net/http path reads the request anew.
		l.release(c)
		l.handOff(c, nil)
		return
	}
	u, reused, err := l.appConn(b)
	if err != nil {
		if !c.retried {
			l.release(c)
			l.handOff(c, nil) // never sent: the net/http path sends, holds or answers 502
			return
		}
		// The second try found no connection: the net/http path's own
		// failed second send.
		pa := &pendingAnswer{backend: b, n: c.n, failed: err, since: c.epoch, retried: true, unsent: true}
		c.backend, c.n, c.state = nil, nil, stIdle
		l.handOff(c, pa)
		return
	}
	c.up, c.reused, u.client, u.wrote = u, reused, c, false
	c.state, c.since = stWaiting, time.Now()
	u.send = appendAppHead(u.send[:0], c.in, &l.rh, c.ip)
	l.appWritable(u)
}

// loopRoute is acquire for the loop: the active backend, counted, when the
// proxy routes plainly (see Loop) and target is not the host health path;
// else nil and nothing counted.
func (p *Proxy) loopRoute(target []byte) (*Backend, *atomic.Int64) {
	rt := p.route.Load()
	if !p.loopServes(rt) {
		return nil, nil
	}
	if hp := p.host.path.Load(); hp != nil {
		path := target
		if i := bytes.IndexByte(target, '?'); i >= 0 {
			path = target[:i]
		}
		if string(path) == *hp || bytes.IndexByte(path, '%') >= 0 {
			return nil, nil // the health answer, or a path only net/http decodes
		}
	}
	b := rt.main
	n := &b.http
	n.Add(1)
	if now := p.route.Load(); now != rt && !now.routes(b) {
		b.done(n)
		return nil, nil
	}
	b.requests.Add(1)
	return b, n
}

// loopServes says whether the proxy routes plainly, as the loop needs (see
// Loop), with route rt: no pause or maintenance, a route (not holding),
// no canary, and no observer that reads the request (the access log: the
// net/http path builds one; the metrics are a ResultObserver).
func (p *Proxy) loopServes(rt *route) bool {
	if p.mode.Load() != nil || rt == nil || rt.canary != nil {
		return false
	}
	if obs := rt.main.obs; obs != nil {
		if _, ok := obs.(ResultObserver); !ok {
			return false
		}
	}
	return true
}

// appConn returns an idle app connection to b from the pool, or dials one
// (non-blocking; the head waits in send until it is connected).
func (l *loopThread) appConn(b *Backend) (*lconn, bool, error) {
	if list := l.idle[b]; len(list) > 0 {
		u := list[len(list)-1]
		l.idle[b] = list[:len(list)-1]
		return u, true, nil
	}
	sa, ok := l.addrs[b]
	if !ok {
		a, err := net.ResolveTCPAddr("tcp", b.addr)
		if err != nil {
			return nil, false, err
		}
		if ip4 := a.IP.To4(); ip4 != nil {
			s := &unix.SockaddrInet4{Port: a.Port}
			copy(s.Addr[:], ip4)
			sa = s
		} else {
			s := &unix.SockaddrInet6{Port: a.Port}
			copy(s.Addr[:], a.IP.To16())
			sa = s
		}
		l.addrs[b] = sa
	}
	domain := unix.AF_INET
	if _, v6 := sa.(*unix.SockaddrInet6); v6 {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, false, err
	}
	rawNoDelay(fd)
	u := &lconn{fd: fd, app: true, b: b, since: time.Now()}
	switch err := unix.Connect(fd, sa); err {
	case nil:
	case unix.EINPROGRESS:
		u.connecting = true
	default:
		unix.Close(fd)
		return nil, false, err
	}
	if err := l.add(u); err != nil {
		unix.Close(fd)
		return nil, false, err
	}
	return u, false, nil
}

// appWritable finishes a connect and writes what is left of the head.
func (l *loopThread) appWritable(u *lconn) {
	if u.connecting {
		// EPOLLOUT comes once the connect ended, either way; called
		// before that (from serve), the socket is not yet connected.
		if e, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
			l.appFailed(u)
			return
		}
		if _, err := unix.Getpeername(u.fd); err != nil {
			return // still connecting
		}
		u.connecting = false
	}
	for len(u.send) > 0 {
		n, e := rawIO(unix.SYS_WRITE, u.fd, u.send)
		if e == unix.EINTR {
			continue
		}
		if e == unix.EAGAIN {
			return
		}
		if e != 0 {
			l.appFailed(u)
			return
		}
		u.wrote = true
		u.send = u.send[:copy(u.send, u.send[n:])]
	}
}

// readApp reads the app's answer and passes it on once it is whole.
func (l *loopThread) readApp(u *lconn, hup bool) {
	for {
		n, gone := readSome(u.fd, l.rbuf)
		if gone {
			l.appFailed(u)
			return
		}
		if n == 0 {
			break
		}
		if u.client == nil {
			// An idle connection is not to say anything: what it said
			// would be the next request's answer.
			if f := u.b.fast.Load(); f != nil {
				f.reportUnsolicited(l.rbuf[:n])
			}
			l.dropIdle(u)
			return
		}
		u.ans = append(u.ans, l.rbuf[:n]...)
		if len(u.ans) > loopMaxHead+loopMaxBody || n < len(l.rbuf) && !hup {
			break // full, or a short read (see readClient)
		}
		if !l.mayFrame(u) {
			// An answer the loop hands over: stop reading it here, or
			// up to 272 KiB of it would be read, then copied to go over
			// pending (a quarter off a 1 MiB answer's throughput).
			break
		}
	}
	if u.client != nil {
		l.answer(u.client, u)
	}
}

// mayFrame says whether u's answer, as far as it is read, may still be one
// the loop frames itself (answer): its head is not whole yet, or it is
// Fast with a body of at most loopMaxBody. Asked only when readApp would
// read on (a full read, or the app closing), so the usual small answer
// (one short read) is not scanned twice.
func (l *loopThread) mayFrame(u *lconn) bool {
	switch h1.ScanResponse(u.ans, loopMaxHead, &l.ah) {
	case h1.NeedMore:
		return true
	case h1.Slow:
		return false
	}
	return l.ah.ContentLength <= loopMaxBody
}

// appFailed ends an app connection that broke or closed. As the net/http
// path's transport (sendPooled): a pooled connection that failed before
// any byte of the answer is tried once more on a new one (the app closed
// it as the request went out); any other failure before the answer goes
// to the net/http path as its own failed send (the crash hold's rules:
// it may wait for the app and send once more, or answer 502); one cut
// off in its answer gets the net/http path's answer to that (502).
func (l *loopThread) appFailed(u *lconn) {
	c := u.client
	if c == nil {
		l.dropIdle(u)
		return
	}
	if len(u.ans) > 0 {
		l.handOffPending(c, u, true)
		return
	}
	err := errors.New("the app closed the connection without answering")
	if e, gerr := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && e != 0 {
		err = unix.Errno(e)
	}
	unsent := !u.wrote
	l.closeConn(u)
	c.up = nil
	if c.reused && !c.retried {
		c.retried = true
		l.send(c)
		return
	}
	pa := &pendingAnswer{backend: c.backend, n: c.n, failed: err, since: c.epoch, retried: c.retried, unsent: unsent}
	c.backend, c.n = nil, nil // the pending answer holds the count now
	c.state = stIdle
	l.handOff(c, pa)
}

// dropIdle closes a pooled app connection and takes it out of the pool.
func (l *loopThread) dropIdle(u *lconn) {
	list := l.idle[u.b]
	for i, x := range list {
		if x == u {
			l.idle[u.b] = append(list[:i], list[i+1:]...)
			break
		}
	}
	l.closeConn(u)
}

// answer passes a whole Fast answer to the client, or hands the
// connection off with the answer pending.
func (l *loopThread) answer(c *lconn, u *lconn) {
	h := &l.ah
	switch h1.ScanResponse(u.ans, loopMaxHead, h) {
	case h1.NeedMore:
		return
	case h1.Slow:
		l.handOffPending(c, u, false)
		return
	}
	if h.ContentLength > loopMaxBody {
		l.handOffPending(c, u, false)
		return
	}
	end := h.Len + int(h.ContentLength)
	if len(u.ans) < end {
		return // the body is not all here
	}
	body := u.ans[h.Len:end]
	ca := clientAnswer{minor: c.minor, close: c.closeAfter}
	if h.Date < 0 {
		ca.date = l.httpDate()
	}
	if needsSniff(u.ans, h) {
		ca.sniffed = http.DetectContentType(body[:min(len(body), 512)])
	}
	c.out = appendClientHead(c.out, u.ans, h, ca)
	c.out = append(c.out, body...)
	// The app connection goes back to the pool unless it said it closes,
	// sent more than the answer, its backend is no longer routed to, or
	// the thread's share of the proxy's idle connections per app is full.
	keep := !h.Close && len(u.ans) == end && len(u.send) == 0 && !u.connecting && !l.stopping.Load() &&
		len(l.idle[u.b]) < l.poolMax && l.p.route.Load().routes(u.b)
	u.ans, u.client, c.up = trimBuf(u.ans), nil, nil
	if keep {
		u.since = time.Now()
		l.idle[u.b] = append(l.idle[u.b], u)
	} else {
		l.closeConn(u)
	}
	if obs := c.backend.obs; obs != nil {
		// Before the write, as net/http's path reports a small answer
		// before its last flush: whoever reads the metrics after the
		// answer arrived sees it counted.
		obs.RequestDone(nil, Result{Status: h.Status, Bytes: h.ContentLength, Start: c.since, Duration: time.Since(c.since)})
	}
	l.release(c)
	l.served.Add(1)
	c.bounces, c.fresh = 0, false
	c.in = c.in[:copy(c.in, c.in[c.headLen:])]
	if c.closeAfter {
		c.in = c.in[:0] // nothing after the last request is read as one
	}
	c.state = stWriting
	l.flushClient(c)
}

// flushClient writes the answer; once it is out, the next request.
func (l *loopThread) flushClient(c *lconn) {
	for len(c.out) > 0 {
		n, e := rawIO(unix.SYS_WRITE, c.fd, c.out)
		if e == unix.EINTR {
			continue
		}
		if e == unix.EAGAIN {
			return // EPOLLOUT calls again
		}
		if e != 0 {
			l.clientGone(c)
			return
		}
		c.out = c.out[:copy(c.out, c.out[n:])]
	}
	c.out = trimBuf(c.out)
	if c.state != stWriting {
		return
	}
	if c.closeAfter {
		l.linger(c)
		return
	}
	c.state, c.since = stIdle, time.Now()
	if c.readStop {
		l.readClient(c, false) // it stopped at a full buffer: no edge will come for the rest
		return
	}
	l.serve(c)
}

// linger ends a connection whose last answer is written, as net/http
// does: a FIN after the answer, then whatever the client still sends is
// read and dropped until it closes too, or loopLinger has passed. Closing
// with bytes unread would send an RST, which can destroy the answer
// before the client has read it.
func (l *loopThread) linger(c *lconn) {
	_, _, _ = unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(c.fd), unix.SHUT_WR, 0) // raw, as rawIO
	c.state, c.since = stLinger, time.Now()
	l.discard(c)
}

// discard reads and drops what a lingering client sends; at its end the
// connection closes.
func (l *loopThread) discard(c *lconn) {
	for {
		n, gone := readSome(c.fd, l.rbuf)
		if gone {
			l.closeConn(c)
			return
		}
		if n == 0 {
			return
		}
	}
}

// trimBuf empties b for reuse, or drops it when a large answer grew it:
// an idle connection keeps no more than a small buffer.
func trimBuf(b []byte) []byte {
	if cap(b) > 16<<10 {
		return nil
	}
	return b[:0]
}

// handOffPending gives c to the net/http path with u's answer pending.
// broken says u closed or failed after the bytes in u.ans.
func (l *loopThread) handOffPending(c *lconn, u *lconn, broken bool) {
	l.forget(u)
	var conn net.Conn
	if !broken {
		var err error
		if conn, err = fdConn(u.fd); err != nil { // fdConn closed u.fd
			// The app connection cannot go over (no descriptor left), so
			// neither can the rest of its answer: the client is cut off,
			// as when the app breaks off mid-answer. Without conn the
			// net/http path would take what was read for the whole.
			c.up = nil
			l.clientGone(c)
			return
		}
	} else {
		unix.Close(u.fd)
	}
	pa := &pendingAnswer{backend: c.backend, n: c.n, head: append([]byte(nil), u.ans...), conn: conn}
	if t := time.Duration(l.p.upstreamTimeout.Load()); t > 0 {
		pa.timeout = max(t-time.Since(c.since), time.Nanosecond)
	}
	c.backend, c.n, c.up = nil, nil, nil // the pending answer holds the count now
	c.state = stIdle
	l.handOff(c, pa)
}

// handOff gives c to the net/http path with what it read, and pa, if
// any, pending.
func (l *loopThread) handOff(c *lconn, pa *pendingAnswer) {
	l.release(c)
	l.forget(c)
	conn, err := fdConn(c.fd)
	if err == nil {
		tc, ok := conn.(*net.TCPConn)
		if ok {
			hc := &handedConn{TCPConn: tc, held: append([]byte(nil), c.in...), bounces: min(c.bounces+1, loopMaxBounces)}
			hc.pending.Store(pa)
			l.handed.Add(1) // before: net/http may answer before give returns
			if l.handoff.give(hc) {
				return
			}
			l.handed.Add(^uint64(0))
			pa = hc.pending.Swap(nil)
		}
		_ = conn.Close()
	}
	if pa != nil { // nobody will answer it
		pa.release()
	}
}

// fdConn turns a descriptor the loop owns into a net.Conn, which owns it
// from then on.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	defer f.Close() // net.FileConn has a descriptor of its own
	return net.FileConn(f)
}

// sweep applies the timeouts, at most once a second, and at a Stop hands
// every idle client off.
func (l *loopThread) sweep(now time.Time) {
	l.swept = now
	stopping := l.stopping.Load()
	upTimeout := time.Duration(l.p.upstreamTimeout.Load())
	for _, c := range l.conns {
		if c.app {
			if c.client == nil && (now.Sub(c.since) > loopAppIdle || stopping || !l.p.route.Load().routes(c.b)) {
				l.dropIdle(c)
			}
			continue
		}
		switch c.state {
		case stIdle:
			switch {
			case stopping:
				l.handOff(c, nil)
			case len(c.in) == 0 && now.Sub(c.since) > loopIdle,
				len(c.in) == 0 && c.fresh && now.Sub(c.since) > loopHead:
				// A new connection gets the head timeout for its first
				// request, from its accept, as net/http's does; an idle
				// one between requests the idle timeout.
				l.closeConn(c)
			case len(c.in) > 0 && now.Sub(c.since) > loopHead:
				// As net/http's ReadHeaderTimeout: closed, unanswered. Handed
				// off, it would get net/http's whole timeout once more.
				l.closeConn(c)
			}
		case stLinger:
			if stopping || now.Sub(c.since) > loopLinger {
				l.closeConn(c) // its answer is out, and the FIN after it
			}
		case stWriting:
			if now.Sub(c.since) > loopIdle {
				l.closeConn(c) // a client that does not read its answer
			}
		case stWaiting:
			if stopping && c.up != nil && !c.up.connecting && len(c.up.send) == 0 {
				// The net/http path waits for its answer as for its own, and
				// the stop waits for that path.
				l.handOffPending(c, c.up, false)
				continue
			}
			if c.backend != nil && c.backend.kill.Err() != nil {
				l.closeConn(c.up) // the release was stopped under it: route it again
				c.up = nil
				l.release(c)
				c.state = stIdle
				l.handOff(c, nil)
			} else if upTimeout > 0 && now.Sub(c.since) > upTimeout && c.up != nil {
				l.handOffPending(c, c.up, false) // net/http's deadline answers 504
			}
		}
	}
	// After the idle connections of backends no longer routed to were
	// dropped above: forget those backends, or the loop would keep an
	// entry per release ever deployed.
	rt := l.p.route.Load()
	for b := range l.addrs { // every backend the loop sent to has an address
		if len(l.idle[b]) == 0 && !rt.routes(b) {
			delete(l.idle, b)
			delete(l.addrs, b)
		}
	}
}

// httpDate is the Date value net/http's server would write now.
func (l *loopThread) httpDate() []byte {
	now := time.Now()
	if s := now.Unix(); s != l.dateSec || l.date == nil {
		l.dateSec = s
		l.date = now.UTC().AppendFormat(l.date[:0], http.TimeFormat)
	}
	return l.date
}
