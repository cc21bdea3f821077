package floor

import (
	"errors"
	"net"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Loop forwards every connection ln accepts to upstream (an IPv4
// address) on one locked OS thread with its own epoll instance, like one
// nginx worker, until stop is closed. It takes ln's descriptor but does
// not close ln. heads says what the loop does with each head.
func Loop(ln *net.TCPListener, upstream string, heads Heads, stop <-chan struct{}) error {
	addr, err := net.ResolveTCPAddr("tcp4", upstream)
	if err != nil {
		return err
	}
	up := &unix.SockaddrInet4{Port: addr.Port}
	copy(up.Addr[:], addr.IP.To4())
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	lfd := -1
	if err := rc.Control(func(fd uintptr) { lfd = int(fd) }); err != nil {
		return err
	}
	// stop is turned into a readable pipe so the loop sees it in epoll.
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return err
	}
	defer unix.Close(p[0])
	go func() {
		<-stop
		unix.Write(p[1], []byte{0})
		unix.Close(p[1])
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l, err := newLoop(lfd, p[0], up)
	if err != nil {
		return err
	}
	l.heads = heads
	defer l.close()
	return l.run()
}

// conn is one end of a forwarded pair.
type conn struct {
	fd     int
	client bool
	peer   *conn
	buf    []byte   // bytes read and not yet forwarded
	p      rewriter // the pair's, unless PassHeads
	ip     string   // the client's address, unless PassHeads
}

type loop struct {
	ep, lfd, stopfd int
	up              *unix.SockaddrInet4
	conns           map[int]*conn
	rbuf            []byte
	heads           Heads
}

// Heads is what Loop does with each head.
type Heads int

const (
	// PassHeads passes each head on as it came (checking only that a
	// request has no body and an answer a Content-Length).
	PassHeads Heads = iota
	// ParseHeads parses both heads with internal/h1 and writes them anew
	// (see parser).
	ParseHeads
	// ScanHeads checks and rewrites both heads in place, allocating
	// nothing per request (see scanner).
	ScanHeads
)

// rewriter turns a request head into the head sent to the app and an
// answer head into the head sent to the client, for one connection pair.
type rewriter interface {
	request(head []byte, clientIP string) ([]byte, error)
	// answerHead returns the head to send and the body's length; it may
	// be called again for the same answer until its body is all here.
	answerHead(head []byte) ([]byte, int, error)
	// answered retires the oldest request once its answer, out (the head
	// answerHead returned, grown by the body), has been sent.
	answered(out []byte)
}

func newLoop(lfd, stopfd int, up *unix.SockaddrInet4) (*loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	l := &loop{ep: ep, lfd: lfd, stopfd: stopfd, up: up, conns: map[int]*conn{}, rbuf: make([]byte, 64<<10)}
	for _, fd := range []int{lfd, stopfd} {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			unix.Close(ep)
			return nil, err
		}
	}
	return l, nil
}

func (l *loop) close() {
	for fd := range l.conns {
		unix.Close(fd)
	}
	unix.Close(l.ep)
}

func (l *loop) run() error {
	evs := make([]unix.EpollEvent, 256)
	for {
		// A raw system call: the runtime does not see the loop blocked in
		// a system call, so sysmon does not wake every 20 µs to take the P
		// back (measured: that alone costs ~10 µs per request here).
		// The price: while the loop waits it keeps the P, and with one
		// CPU (GOMAXPROCS=1, as the suite pins it) that is the only one:
		// timers, signal handling and the GC's background marking wait
		// until sysmon preempts the loop (about 10 ms; the preemption
		// signal interrupts the wait with EINTR and Gosched gives the P
		// up) or the 100 ms timeout ends the wait. This shapes what
		// ParseHeads' garbage costs; an event-loop request path would
		// have to allocate nothing per request, or wait differently.
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 100, 0, 0)
		if e == unix.EINTR || (e == 0 && r == 0) {
			runtime.Gosched()
			continue
		}
		if e != 0 {
			return e
		}
		for _, ev := range evs[:int(r)] {
			switch fd := int(ev.Fd); fd {
			case l.stopfd:
				return nil
			case l.lfd:
				l.accept()
			default:
				if c := l.conns[fd]; c != nil {
					// After a hang-up, read to the end: a short read is
					// no sign of an empty socket then, and no new edge
					// would come for the end of the stream.
					l.readable(c, ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0)
				}
			}
		}
	}
}

// accept takes every pending connection and opens its upstream one.
func (l *loop) accept() {
	for {
		cfd, _, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			// EAGAIN: none left. Anything else (EMFILE) leaves the
			// connection queued and the level-triggered listener ready,
			// so the loop would spin: back off a little.
			if err != unix.EAGAIN {
				time.Sleep(10 * time.Millisecond)
			}
			return
		}
		ufd, err := l.dial()
		if err != nil {
			unix.Close(cfd)
			continue
		}
		c := &conn{fd: cfd, client: true}
		u := &conn{fd: ufd, peer: c}
		c.peer = u
		if l.heads != PassHeads {
			if l.heads == ParseHeads {
				c.p = newParser()
			} else {
				c.p = &scanner{}
			}
			u.p = c.p
			if sa, err := unix.Getpeername(cfd); err == nil {
				if a, ok := sa.(*unix.SockaddrInet4); ok {
					c.ip = net.IP(a.Addr[:]).String()
				}
			}
		}
		err = l.add(c)
		if err == nil {
			err = l.add(u)
		}
		if err != nil {
			for _, x := range []*conn{c, u} {
				delete(l.conns, x.fd)
				unix.Close(x.fd)
			}
		}
	}
}

// dial connects to the upstream (blocking: loopback connects complete at
// once), then makes the socket non-blocking.
func (l *loop) dial() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, l.up); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (l *loop) add(c *conn) error {
	_ = unix.SetsockoptInt(c.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	l.conns[c.fd] = c
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(c.fd)})
}

// drop closes both ends of c's pair.
func (l *loop) drop(c *conn) {
	for _, x := range []*conn{c, c.peer} {
		if x != nil && l.conns[x.fd] == x {
			delete(l.conns, x.fd)
			unix.Close(x.fd)
		}
	}
}

// readable reads what c has (edge-triggered: until EAGAIN, or a short
// read unless the peer hung up, as nginx does) and forwards every
// complete message.
func (l *loop) readable(c *conn, hup bool) {
	for {
		n, err := unix.Read(c.fd, l.rbuf)
		if err == unix.EAGAIN {
			return
		}
		if err != nil || n == 0 {
			l.drop(c)
			return
		}
		c.buf = append(c.buf, l.rbuf[:n]...)
		if err := l.forward(c); err != nil {
			l.drop(c)
			return
		}
		if n < len(l.rbuf) && !hup {
			return
		}
	}
}

var (
	errTooBig = errors.New("floor: head too large")
	errStuck  = errors.New("floor: the peer has not read for a second")
	errMore   = errors.New("floor: the answer's body is not all here yet")
)

// forward writes every complete message at the start of c.buf to c's peer.
func (l *loop) forward(c *conn) error {
	for {
		end := headEnd(c.buf)
		if end < 0 {
			if len(c.buf) > maxHead {
				return errTooBig
			}
			return nil
		}
		if c.p != nil {
			switch err := l.forwardParsed(c, end); err {
			case nil:
				continue
			case errMore:
				return nil
			default:
				return err
			}
		}
		if c.client {
			if !requestOK(c.buf[:end]) {
				return errFrame
			}
		} else {
			if end = answerLen(c.buf[:end]); end < 0 {
				return errFrame
			}
			if len(c.buf) < end {
				return nil
			}
		}
		if err := writeAll(c.peer.fd, c.buf[:end]); err != nil {
			return err
		}
		c.buf = c.buf[:copy(c.buf, c.buf[end:])]
	}
}

// forwardParsed is forward's step with a rewriter: one message whose head ends
// at end. errMore means the answer's body is not all here yet.
func (l *loop) forwardParsed(c *conn, end int) error {
	if c.client {
		head, err := c.p.request(c.buf[:end], c.ip)
		if err != nil {
			return err
		}
		if err := writeAll(c.peer.fd, head); err != nil {
			return err
		}
		c.buf = c.buf[:copy(c.buf, c.buf[end:])]
		return nil
	}
	head, n, err := c.p.answerHead(c.buf[:end])
	if err != nil {
		return err
	}
	if len(c.buf) < end+n {
		return errMore
	}
	out := append(head, c.buf[end:end+n]...)
	if err := writeAll(c.peer.fd, out); err != nil {
		return err
	}
	c.p.answered(out)
	c.buf = c.buf[:copy(c.buf, c.buf[end+n:])]
	return nil
}

// writeAll writes b, waiting in poll(2) when the socket buffer is full
// (which a benchmark's small answers never make it).
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EAGAIN {
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 1000)
			if err != nil && err != unix.EINTR {
				return err
			}
			if n == 0 && err == nil {
				return errStuck
			}
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
