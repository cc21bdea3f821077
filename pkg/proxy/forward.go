package proxy

import (
	"errors"
	"io"
	"net/http"
	"reflect"
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
// The app sees the same request as on the other paths: writeHead encodes
// the one header policy (header.go). Of the answer, hop-by-hop headers are
// dropped (removeHopByHop), interim 1xx answers are skipped,
// trailers are forwarded, and streaming answers (unknown length,
// text/event-stream) are flushed as they come.
func (b *Backend) forward(w http.ResponseWriter, r *http.Request) bool {
	if (r.Body != nil && r.Body != http.NoBody) || r.ProtoMajor != 1 || !strings.HasPrefix(r.RequestURI, "/") {
		return false
	}
	// The client's Connection: close is about its own connection; the head
	// sent to the app never asks to close (writeHead drops it), so the
	// upstream connection stays pooled.
	// The answer's fields are parsed straight into w's header when it is
	// empty (nearly always: a canary's Set-Cookie is the exception), so no
	// map is built only to be copied.
	h := w.Header()
	res, err := b.fast.Load().send(r, headForward, false, h)
	b.answer(w, r, h, res, err)
	return true
}

// answer passes the app's answer to a plain request to the client: res
// and err as send returned them, h the header of w they were read into.
// forward and servePending (the event loop's hand-off) end with it.
func (b *Backend) answer(w http.ResponseWriter, r *http.Request, h http.Header, res *http.Response, err error) {
	if err != nil {
		b.rp.ErrorHandler(w, r, err) // a refused answer left h as it was
		return
	}
	defer res.Body.Close()
	shared := sameHeader(h, res.Header)
	if res.StatusCode == http.StatusSwitchingProtocols {
		if shared {
			clear(h) // the 101's fields are not the error's
		}
		b.rp.ErrorHandler(w, r, errors.New("app switched protocols on a request that asked for no upgrade"))
		return
	}
	removeHopByHop(res.Header)
	if !shared {
		copyHead(h, res.Header)
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
		return
	}
	for k, v := range res.Trailer {
		h[http.TrailerPrefix+k] = v
	}
}

// sameHeader reports whether a and b are one map.
func sameHeader(a, b http.Header) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// copyHead copies the answer's header into h, which is empty unless the
// proxy set a header itself (a canary's Set-Cookie): only then are values
// appended rather than the lists taken over.
func copyHead(h, from http.Header) {
	if len(h) == 0 {
		for k, v := range from {
			h[k] = v
		}
		return
	}
	for k, v := range from {
		h[k] = append(h[k], v...)
	}
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
