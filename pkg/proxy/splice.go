package proxy

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// A spliced connection copies an upgraded connection in the kernel with
// splice(2), each direction through a pipe of its own:
//
//	src socket --splice--> pipe --splice--> dst socket
//
// Both splices move the bytes (SPLICE_F_MOVE): each one takes them out of
// where they were and puts them into the next place in one system call.
// So at every moment every byte in transit is either in a kernel socket
// buffer or in the pipe, never only in this process's memory. When the six
// descriptors (two sockets, two pipes with both ends) are also held by
// someone who outlives the process (systemd's fd store, see FDStore), the
// process may die at any instruction: the next one first empties each pipe
// into its destination socket and then goes on splicing from the source.
// Nothing is lost (the pipe is never dropped) and nothing is sent twice (a
// byte leaves the pipe only by being moved into the destination).
//
// A direction keeps no count of its own that matters across a restart: how
// much is in the pipe is read from the kernel (FIONREAD, alias TIOCINQ) when a copy
// starts, and kept in memory only while it runs.

// spliceChunk is the most one splice moves; it is the default pipe size
// (16 pages), so a fill never finds the empty pipe too small.
const spliceChunk = 64 << 10

// splicePair is the six descriptors of one spliced connection: client and
// app sockets, and a pipe per direction (up: client to app, down: app to
// client). Every file is non-blocking and registered with the runtime's
// poller, so a direction waits in the poller, not in a thread.
type splicePair struct {
	client, app       *os.File
	upR, upW          *os.File
	downR, downW      *os.File
	releaseID, connID string
}

// Roles of the six descriptors in their fd store names (see storeName).
var spliceRoles = [6]string{"c", "a", "ur", "uw", "dr", "dw"}

func (p *splicePair) files() [6]*os.File {
	return [6]*os.File{p.client, p.app, p.upR, p.upW, p.downR, p.downW}
}

func (p *splicePair) fileSlice() []*os.File {
	f := p.files()
	return f[:]
}

// close closes this process's descriptors; with copies in an fd store the
// connection itself stays open.
func (p *splicePair) close() {
	for _, f := range p.files() {
		if f != nil {
			_ = f.Close() // ours only; nothing to report
		}
	}
}

// names are the fd store names of p's descriptors, in files() order.
func (p *splicePair) names() []string {
	out := make([]string, len(spliceRoles))
	for i, role := range spliceRoles {
		out[i] = storeName(p.releaseID, p.connID, role)
	}
	return out
}

// storeName is "ws.RELEASE.CONN.ROLE". Release ids are [A-Za-z0-9._-]
// (config.CheckReleaseID, at most 200) and conn ids 16 hex digits, so a
// name is at most 226 characters, printable and without ':' — what
// systemd allows for FDNAME= (255). The release may contain dots: a name
// is read from its end (parseStoreName).
func storeName(releaseID, connID, role string) string {
	return "ws." + releaseID + "." + connID + "." + role
}

// newPipe returns a non-blocking pipe registered with the poller.
func newPipe() (r, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "pipe"), os.NewFile(uintptr(fds[1]), "pipe"), nil
}

// fileOf returns a descriptor of its own for a socket connection (a dup,
// non-blocking and in the poller); the caller closes c itself.
func fileOf(c any) (*os.File, error) {
	fc, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, errors.New("connection has no file descriptor")
	}
	return fc.File()
}

// direction is one way of a spliced connection.
type direction struct {
	src, dst *os.File
	pr, pw   *os.File // the pipe between them
	srcRC    syscall.RawConn
	dstRC    syscall.RawConn
	pending  int // bytes in the pipe
}

func newDirection(src, pr, pw, dst *os.File) (*direction, error) {
	d := &direction{src: src, dst: dst, pr: pr, pw: pw}
	var err error
	if d.srcRC, err = src.SyscallConn(); err != nil {
		return nil, err
	}
	if d.dstRC, err = dst.SyscallConn(); err != nil {
		return nil, err
	}
	// Whatever a previous copier left in the pipe goes out first.
	var n int
	var ierr error
	rc, err := pr.SyscallConn()
	if err != nil {
		return nil, err
	}
	if cerr := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); cerr != nil {
		return nil, cerr
	}
	if ierr != nil {
		return nil, fmt.Errorf("pipe size: %w", ierr)
	}
	d.pending = n
	return d, nil
}

// run copies until src ends (nil), or an error or a stop (a deadline in
// the past on src and dst) interrupts it. The files must stay open until
// it returned: it splices by descriptor number. It may be interrupted
// anywhere: see the comment at the top of this file.
func (d *direction) run() error {
	for {
		if err := d.drain(); err != nil {
			return err
		}
		n, err := d.fill()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil // EOF
		}
	}
}

// fill moves up to spliceChunk bytes from src into the empty pipe, waiting
// in the poller until src has something. 0 means EOF.
func (d *direction) fill() (int, error) {
	var n int
	var serr error
	pw, err := rawFD(d.pw)
	if err != nil {
		return 0, err
	}
	err = d.srcRC.Read(func(fd uintptr) bool {
		var m int64
		m, serr = unix.Splice(int(fd), nil, pw, nil, spliceChunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		n = int(m)
		// The pipe is empty here, so EAGAIN means src has nothing yet.
		return serr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("splice from socket: %w", serr)
	}
	d.pending += n
	return n, nil
}

// drain moves everything in the pipe into dst, waiting in the poller
// whenever dst's send buffer is full.
func (d *direction) drain() error {
	if d.pending == 0 {
		return nil
	}
	pr, err := rawFD(d.pr)
	if err != nil {
		return err
	}
	for d.pending > 0 {
		var serr error
		err := d.dstRC.Write(func(fd uintptr) bool {
			var m int64
			m, serr = unix.Splice(pr, nil, int(fd), nil, d.pending, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if m > 0 {
				d.pending -= int(m)
			}
			return serr != unix.EAGAIN
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("splice to socket: %w", serr)
		}
	}
	return nil
}

// rawFD is f's descriptor number for a splice made while another file's
// RawConn holds the poller: the pipe ends are only ever used by the one
// direction that owns them, so no other goroutine closes them meanwhile.
func rawFD(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}
