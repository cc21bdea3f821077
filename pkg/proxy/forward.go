package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
)

// forward proxies a plain request without a body — nearly all traffic —
// without ReverseProxy: the request head is written straight from the
// incoming request (no clone of the request and its headers, no header
// rewriting pass), the response head is copied into w, and the body is
// streamed with a pooled buffer. It reports false, having done nothing,
// for anything it does not handle (a body, an absolute-form target, HTTP/2
// from the client); ReverseProxy takes those.
//
// Semantics match the ReverseProxy path: hop-by-hop headers (and those the
// Connection header names) are dropped both ways, X-Forwarded-* are set by
// setForwarded, the Host and the raw request target are passed through,
// interim 1xx answers are skipped, trailers are forwarded, and streaming
// answers (unknown length, text/event-stream) are flushed as they come.
func (b *Backend) forward(w http.ResponseWriter, r *http.Request) bool {
	if (r.Body != nil && r.Body != http.NoBody) || r.ProtoMajor != 1 || !strings.HasPrefix(r.RequestURI, "/") {
		return false
	}
	// The client's Connection: close is about its own connection; the head
	// sent to the app never asks to close (writeHead drops it), so the
	// upstream connection stays pooled.
	res, err := b.fast.Load().send(r, func(w io.Writer) error { return writeHead(w.(*bufio.Writer), r) }, false)
	if err != nil {
		b.rp.ErrorHandler(w, r, err)
		return true
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusSwitchingProtocols {
		b.rp.ErrorHandler(w, r, errors.New("app switched protocols on a request that asked for no upgrade"))
		return true
	}
	removeHopByHop(res.Header)
	h := w.Header()
	for k, v := range res.Header {
		h[k] = v
	}
	if len(res.Trailer) > 0 {
		names := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(res.StatusCode)
	stream := res.ContentLength == -1 || strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream")
	if err := b.copyBody(w, res.Body, stream); err != nil {
		if r.Context().Err() == nil {
			b.rp.ErrorLog.Printf("%s %s: upstream body: %v", r.Method, r.URL.Path, err)
			// Abort the client connection so it sees a truncated answer,
			// not a complete short one (as ReverseProxy does).
			panic(http.ErrAbortHandler)
		}
		return true
	}
	for k, v := range res.Trailer {
		h[http.TrailerPrefix+k] = v
	}
	return true
}

// copyBody streams the body; a streaming answer is flushed after every read.
func (b *Backend) copyBody(w http.ResponseWriter, body io.Reader, stream bool) error {
	buf := b.buffers.Get()
	defer b.buffers.Put(buf)
	var flusher http.Flusher
	if stream {
		flusher, _ = w.(http.Flusher)
	}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client went away: nothing to report
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			return rerr
		}
	}
}

// writeHead writes r's request line and headers for the app.
func writeHead(bw *bufio.Writer, r *http.Request) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(r.RequestURI) // the raw target, query included, as received
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if isHop(k) || k == "Host" || k == "X-Forwarded-For" || k == "X-Forwarded-Proto" || k == "X-Forwarded-Host" || namedIn(conn, k) {
			continue
		}
		for _, v := range vv {
			writeHeaderLine(bw, k, v)
		}
	}
	// "TE: trailers" is end-to-end in practice (gRPC needs it); ReverseProxy
	// keeps it too.
	for _, v := range r.Header["Te"] {
		if strings.Contains(strings.ToLower(v), "trailers") {
			bw.WriteString("Te: trailers\r\n")
			break
		}
	}
	// X-Forwarded-*: the same values setForwarded gives the ReverseProxy path.
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		bw.WriteString("X-Forwarded-For: ")
		for _, v := range r.Header["X-Forwarded-For"] {
			bw.WriteString(v)
			bw.WriteString(", ")
		}
		bw.WriteString(ip)
		bw.WriteString("\r\n")
	} else {
		for _, v := range r.Header["X-Forwarded-For"] {
			writeHeaderLine(bw, "X-Forwarded-For", v)
		}
	}
	if v := r.Header["X-Forwarded-Proto"]; v != nil {
		for _, x := range v {
			writeHeaderLine(bw, "X-Forwarded-Proto", x)
		}
	} else if r.TLS != nil {
		bw.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		bw.WriteString("X-Forwarded-Proto: http\r\n")
	}
	if v := r.Header["X-Forwarded-Host"]; v != nil {
		for _, x := range v {
			writeHeaderLine(bw, "X-Forwarded-Host", x)
		}
	} else {
		writeHeaderLine(bw, "X-Forwarded-Host", r.Host)
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// writeHeaderLine writes "k: v", with any CR or LF in v turned into a
// space (net/http refuses to send them; a header must not split a line).
func writeHeaderLine(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = strings.Map(func(c rune) rune {
			if c == '\r' || c == '\n' {
				return ' '
			}
			return c
		}, v)
	}
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// removeHopByHop deletes the hop-by-hop headers from h, and those its
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, tok := range h["Connection"] {
		for name := range strings.SplitSeq(tok, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for k := range h {
		if isHop(k) {
			delete(h, k)
		}
	}
}

// isHop reports a hop-by-hop header (canonical form).
func isHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// namedIn reports whether the Connection header values list k.
func namedIn(conn []string, k string) bool {
	for _, v := range conn {
		for name := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(name), k) {
				return true
			}
		}
	}
	return false
}
