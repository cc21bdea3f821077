package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
)

// hopHeaders are dropped when forwarding; Connection and Upgrade are set
// again explicitly for the upgrade itself.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// serveUpgrade proxies a protocol switch (WebSocket) itself rather than
// through ReverseProxy: the standard one half-closes the client when the
// backend ends and then waits for the client, so a client that never
// closes keeps the connection — and a draining release — alive forever.
// Here, when either side ends, both are closed.
func (p *Proxy) serveUpgrade(w http.ResponseWriter, r *http.Request, b *Backend) {
	b.ws.Add(1)
	defer b.done(&b.ws)
	if b.kill.Err() != nil {
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(b.kill, cancel)
	defer stop()

	dctx, dcancel := context.WithTimeout(ctx, p.dialer.Timeout)
	backConn, err := p.dialer.DialContext(dctx, "tcp", b.addr)
	dcancel()
	if err != nil {
		p.errorHandler(w, r, err)
		return
	}
	defer backConn.Close()
	// Cancellation (client gone, CloseConnections, shutdown) unblocks every
	// read and write below by closing the backend side.
	stopBack := context.AfterFunc(ctx, func() { _ = backConn.Close() })
	defer stopBack()

	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = "http", b.addr
	out.Host = r.Host
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Set("Connection", "Upgrade")
	out.Header["Upgrade"] = r.Header["Upgrade"]
	setForwarded(out.Header, r)
	if err := out.Write(backConn); err != nil {
		p.errorHandler(w, r, err)
		return
	}
	br := bufio.NewReader(backConn)
	res, err := http.ReadResponse(br, out)
	if err != nil {
		p.errorHandler(w, r, err)
		return
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		// The app refused the upgrade: relay its answer as a normal response.
		defer res.Body.Close()
		for _, h := range hopHeaders {
			res.Header.Del(h)
		}
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		_, _ = io.Copy(w, res.Body) // a failed relay only ends this response
		return
	}
	clientConn, clientBuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.errorHandler(w, r, err)
		return
	}
	defer clientConn.Close()
	stopClient := context.AfterFunc(ctx, func() { _ = clientConn.Close() })
	defer stopClient()

	res.Body = nil // the head only; the rest of br is upgraded traffic
	if err := res.Write(clientBuf); err != nil {
		return
	}
	if err := clientBuf.Flush(); err != nil {
		return
	}
	pipe(clientConn, clientBuf.Reader, backConn, br)
}

// pipe copies both ways until either direction ends, then closes both
// connections and waits for the other copy to stop.
func pipe(client net.Conn, clientR io.Reader, back net.Conn, backR io.Reader) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = client.Close() // ending the pair; errors are moot
			_ = back.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer closeBoth()
		_, _ = io.Copy(back, clientR)
	}()
	go func() {
		defer wg.Done()
		defer closeBoth()
		_, _ = io.Copy(client, backR)
	}()
	wg.Wait()
}
