package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/rollbridge/rollbridge-go/internal/h1"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// serveUpgrade forwards a protocol switch (WebSocket) to b for the whole
// life of the connection, which is what pins it to b.
//
// It does the handshake and the copying itself rather than through
// ReverseProxy, for three reasons:
//   - both sides close together when either ends (ReverseProxy half-closes
//     the client and waits for it, the Node original's leak of draining
//     releases);
//   - CloseConnections (the backend's kill context) closes both sides;
//   - an idle socket costs two goroutines and no buffers (ReverseProxy uses
//     four goroutines and keeps two 32 KiB buffers and two bufio buffers
//     per socket), which is what lets one daemon drain ten thousand of them.
func (b *Backend) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	if b.kill.Err() != nil {
		http.Error(w, statusBody(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stopKill := context.AfterFunc(b.kill, cancel)
	defer stopKill()
	orig := r
	r = r.WithContext(ctx)
	fail := func(err error) {
		if b.kill.Err() != nil {
			// CloseConnections cut the handshake: say so (503), not the
			// side effect it had on the connection.
			err = fmt.Errorf("release %s stopped: %w", b.releaseID, context.Canceled)
		}
		b.rp.ErrorHandler(w, orig, err)
	}

	t := b.fast.Load()
	backConn, err := t.dialer.DialContext(ctx, "tcp", b.addr)
	if err != nil {
		fail(err)
		return
	}
	// Until the copy takes over, ending ctx (client gone, kill) unblocks the
	// handshake by closing the backend.
	stopBack := context.AfterFunc(ctx, func() { _ = backConn.Close() })
	closeBack := true
	defer func() {
		if closeBack {
			stopBack()
			_ = backConn.Close() // not handed over to the copy
		}
	}()

	// The handshake's head only: bytes the client sent after it belong to
	// the new protocol and go through the copy below.
	bw := bufio.NewWriterSize(backConn, 4<<10)
	err = writeHead(bw, r, upgradeType(r.Header))
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		fail(err)
		return
	}
	br := bufio.NewReaderSize(backConn, 4<<10)
	// The app's answer to the handshake is bounded like any answer head
	// (proxy.upstreamTimeoutMs); the connection it upgrades is not.
	if t.headTimeout > 0 {
		_ = backConn.SetReadDeadline(time.Now().Add(t.headTimeout))
	}
	res, err := readFinalResponse(br, r, nil)
	if err != nil {
		var ne net.Error
		if t.headTimeout > 0 && errors.As(err, &ne) && ne.Timeout() {
			err = errHeadTimeout(t.headTimeout)
		}
		fail(err)
		return
	}
	_ = backConn.SetReadDeadline(time.Time{})
	if res.StatusCode != http.StatusSwitchingProtocols {
		relay(w, res, b.buffers) // the app refused the upgrade: pass its answer on
		return
	}
	if want, got := upgradeType(r.Header), upgradeType(res.Header); !strings.EqualFold(want, got) {
		fail(fmt.Errorf("app switched to protocol %q when %q was asked for", got, want))
		return
	}
	clientConn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		fail(err)
		return
	}
	res.Body = nil // write the head only
	if err := res.Write(brw.Writer); err != nil {
		_ = clientConn.Close() // client gone while we answered
		return
	}
	if err := brw.Flush(); err != nil {
		_ = clientConn.Close()
		return
	}
	closeBack = false
	stopBack()
	if h := b.handover; h != nil && b.handOver(ctx, h, clientConn, brw.Reader, backConn, br) {
		return
	}
	b.pipe(ctx, clientConn, brw.Reader, backConn, br)
}

// maxAnswerHead bounds the head of an app's answer (status line and
// fields). http.ReadResponse has no bound and http.Transport's default is
// 10 MB; nginx refuses heads over its 4–8 KiB proxy buffer. 64 KiB leaves
// room for big cookies and policies, and bounds what a broken app can
// make the daemon build per answer: a head of many tiny fields costs ~30
// times its size in maps and strings, about 2 MB here.
const maxAnswerHead = 64 << 10

// maxInterim bounds the interim (1xx) answers before the final one, as
// http.Transport does (it allows 5): an app that sends them for ever
// would otherwise keep the request's goroutine reading them for as long
// as the head timeout allows.
const maxInterim = 16

// readFinalResponse reads the app's answer, skipping interim 1xx answers
// other than 101, with internal/h1's parser (FuzzResponseDifferential
// holds it to http.ReadResponse's framing). into, when empty, becomes the
// answer's Header (the forward path passes its ResponseWriter's header and
// so copies nothing); nil gives the answer a map of its own.
func readFinalResponse(br *bufio.Reader, req *http.Request, into http.Header) (*http.Response, error) {
	for interim := 0; ; interim++ {
		if interim > maxInterim {
			return nil, fmt.Errorf("the app sent more than %d interim (1xx) answers", maxInterim)
		}
		res, err := h1.ReadResponse(br, req.Method, h1.Limits{MaxHeaderBytes: maxAnswerHead}, into)
		if err != nil {
			return nil, err
		}
		if res.StatusCode >= 100 && res.StatusCode < 200 && res.StatusCode != http.StatusSwitchingProtocols {
			_ = res.Body.Close()
			continue
		}
		return res, nil
	}
}

// relay passes a non-101 answer to the client as an ordinary response.
func relay(w http.ResponseWriter, res *http.Response, buffers *bufferPool) {
	defer res.Body.Close()
	removeHopByHop(res.Header)
	copyHead(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
	buf := buffers.Get()
	defer buffers.Put(buf)
	_, _ = io.CopyBuffer(w, res.Body, buf) // a broken relay only ends this response
}

// pipe copies both ways until either direction ends, then closes both
// connections, and returns once the other direction stopped too. ctx ending
// (CloseConnections, shutdown) closes both at once. One direction runs on
// the caller's goroutine, so a socket costs two goroutines in all.
func (b *Backend) pipe(ctx context.Context, client net.Conn, clientBuf *bufio.Reader, back net.Conn, backBuf *bufio.Reader) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = client.Close() // ending the pair; errors are moot
			_ = back.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer closeBoth()
		copyFrom(client, back, backBuf, b.buffers)
	}()
	copyFrom(back, client, clientBuf, b.buffers)
	closeBoth()
	<-done
}

// copyFrom copies src to dst until EOF or an error: first whatever src's
// reader had buffered, then straight from the connection. Between bursts
// it waits in the runtime's poller holding no buffer, and borrows one from
// buffers only while data moves.
func copyFrom(dst io.Writer, src net.Conn, buffered *bufio.Reader, buffers *bufferPool) {
	if n := buffered.Buffered(); n > 0 {
		early, _ := buffered.Peek(n) // cannot fail for Buffered() bytes
		if _, err := dst.Write(early); err != nil {
			return
		}
	}
	rc, err := syscallConn(src)
	for {
		if err == nil {
			if waitReadable(rc) != nil {
				return
			}
		}
		buf := buffers.Get()
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				buffers.Put(buf)
				return
			}
		}
		buffers.Put(buf)
		if rerr != nil {
			return
		}
	}
}

func syscallConn(c net.Conn) (syscall.RawConn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.New("no raw connection")
	}
	return sc.SyscallConn()
}

// waitReadable blocks in the runtime's poller, holding no buffer, until the
// connection has data, EOF or an error for Read to report.
func waitReadable(rc syscall.RawConn) error {
	var probe [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), probe[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN // readable, EOF or an error: let Read report it
	})
}

// keepBackend is ReverseProxy's ModifyResponse for plain requests: an app
// answering 101 to a request that asked for no upgrade gets a 502 and its
// connection closed (ReverseProxy would leave that connection open).
func keepBackend(res *http.Response) error {
	if res.StatusCode == http.StatusSwitchingProtocols {
		return errors.New("app switched protocols on a request that asked for no upgrade")
	}
	return nil
}
