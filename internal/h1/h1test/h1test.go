// Package h1test is the reference side of issue #17's differential test:
// it feeds raw request bytes to a real net/http Server and records what the
// handler saw, so any other request path (the h1 parser, a whole connection
// loop) can be compared with it message by message. Import it from tests
// only.
package h1test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Message is one request as a handler saw it, its body read to the end.
type Message struct {
	Method, RequestURI, Proto string
	ProtoMajor, ProtoMinor    int
	URL                       string // Scheme|Opaque|Host|Path|RawPath|RawQuery|ForceQuery
	Host                      string
	Header                    []string // "Key: v1 | v2", sorted by key, values in order
	ContentLength             int64
	TransferEncoding          []string
	Close                     bool
	Body                      []byte
	BodyErr                   bool // reading the body failed (the connection ends after it)
	Trailer                   []string
}

// Transcript is what one connection carried: the messages handed to the
// handler and, if the connection ended with an error response instead of
// a request, its status.
type Transcript struct {
	Messages []Message
	Status   int // 0: the connection ended without an error response
	// Set by a candidate only: the stricter rule it rejected by, and the
	// offset in the raw bytes of the message it rejected at or in.
	Rule   string
	RuleAt int
}

// Record turns a request whose body has been read into a Message.
func Record(r *http.Request, body []byte, bodyErr error) Message {
	m := Message{
		Method: r.Method, RequestURI: r.RequestURI, Proto: r.Proto,
		ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor,
		Host: r.Host, Header: fields(r.Header), ContentLength: r.ContentLength,
		TransferEncoding: r.TransferEncoding, Close: r.Close,
		Body: body, BodyErr: bodyErr != nil, Trailer: fields(r.Trailer),
	}
	if u := r.URL; u != nil {
		m.URL = fmt.Sprintf("%s|%s|%s|%s|%s|%s|%v|%v", u.Scheme, u.Opaque, u.Host, u.Path, u.RawPath, u.RawQuery, u.ForceQuery, u.User != nil)
	}
	return m
}

func fields(h http.Header) []string {
	if h == nil {
		return nil
	}
	out := make([]string, 0, len(h))
	for k, vv := range h {
		if vv == nil {
			out = append(out, k+": <nil>")
			continue
		}
		out = append(out, k+": "+strings.Join(vv, " | "))
	}
	sort.Strings(out)
	return out
}

// NetHTTP serves raw as one connection's input to a real net/http Server
// (MaxHeaderBytes set, DisableGeneralOptionsHandler, every other setting
// default) whose handler reads
// each body to its end and answers 200 with an empty body; the input ends
// with EOF, like a client that half-closes after writing.
func NetHTTP(raw []byte, maxHeaderBytes int) Transcript {
	var tr Transcript
	var mu sync.Mutex
	srv := &http.Server{
		MaxHeaderBytes: maxHeaderBytes,
		// So that "OPTIONS *" reaches the handler too. (With the default,
		// as in pkg/daemon, net/http answers it itself: 200, no body.)
		DisableGeneralOptionsHandler: true,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			mu.Lock()
			tr.Messages = append(tr.Messages, Record(r, body, err))
			mu.Unlock()
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusOK)
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	c := &memConn{in: raw, done: make(chan struct{})}
	l := &oneListener{conn: c, closed: make(chan struct{})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l) // returns when l is closed
	}()
	<-c.done
	_ = l.Close()
	<-served

	mu.Lock()
	defer mu.Unlock()
	tr.Status = errorStatus(c.output())
	return tr
}

// errorStatus reads the server's responses and returns the status of an
// error response, which is always the last one.
func errorStatus(out []byte) int {
	br := bufio.NewReader(bytes.NewReader(out))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode >= 400 {
			return resp.StatusCode
		}
	}
}

// memConn is the server's end of a connection whose client wrote raw and
// then half-closed. done closes when the server has written its last byte
// (CloseWrite, which net/http calls before its 500 ms linger, or Close).
type memConn struct {
	mu       sync.Mutex
	in       []byte
	out      bytes.Buffer
	done     chan struct{}
	doneOnce sync.Once
}

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *memConn) output() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *memConn) CloseWrite() error { c.doneOnce.Do(func() { close(c.done) }); return nil }
func (c *memConn) Close() error      { return c.CloseWrite() }

func (c *memConn) LocalAddr() net.Addr              { return addr{} }
func (c *memConn) RemoteAddr() net.Addr             { return addr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

type addr struct{}

func (addr) Network() string { return "mem" }
func (addr) String() string  { return "mem" }

// oneListener hands out one connection, then blocks until closed.
type oneListener struct {
	mu     sync.Mutex
	conn   net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *oneListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneListener) Addr() net.Addr { return addr{} }

// Stricter holds, for each stricter rule of package h1 (h1.Rules), a test
// of whether it can apply to the raw bytes from the start of the message a
// candidate rejected: the candidate may reject at or before the message
// where the rule applies, so the test looks at everything from there on.
var Stricter = map[string]func(rest []byte, maxHeaderBytes int) bool{
	"leading-empty": func(rest []byte, _ int) bool {
		return len(rest) > 0 && (rest[0] == '\r' || rest[0] == '\n')
	},
	"bare-lf": func(rest []byte, _ int) bool {
		for i, c := range rest {
			if c == '\n' && (i == 0 || rest[i-1] != '\r') {
				return true
			}
		}
		return false
	},
	"obs-fold": func(rest []byte, _ int) bool {
		return bytes.Contains(rest, []byte("\n ")) || bytes.Contains(rest, []byte("\n\t"))
	},
	"head-size": func(rest []byte, max int) bool {
		end := bytes.Index(rest, []byte("\r\n\r\n"))
		if lf := bytes.Index(rest, []byte("\n\n")); lf >= 0 && (end < 0 || lf < end) {
			end = lf
		}
		return end < 0 && len(rest) > max || end+4 > max
	},
	"http-minor": func(rest []byte, _ int) bool { return httpMinor.Match(rest) },
	"h2-preface": func(rest []byte, _ int) bool { return bytes.Contains(rest, []byte("PRI * HTTP/2.0")) },
	"cl-and-te": func(rest []byte, _ int) bool {
		l := bytes.ToLower(rest)
		return bytes.Contains(l, []byte("content-length")) && bytes.Contains(l, []byte("transfer-encoding"))
	},
	"duplicate-cl": func(rest []byte, _ int) bool {
		return bytes.Count(bytes.ToLower(rest), []byte("content-length")) >= 2
	},
	"te-http10": func(rest []byte, _ int) bool {
		return bytes.Contains(bytes.ToLower(rest), []byte("transfer-encoding")) && bytes.Contains(rest, []byte("HTTP/1.0"))
	},
	"expect":       func(rest []byte, _ int) bool { return bytes.Contains(bytes.ToLower(rest), []byte("expect")) },
	"chunk-ext":    func(rest []byte, _ int) bool { return bytes.Contains(rest, []byte(";")) },
	"trailer-name": func(rest []byte, _ int) bool { return nameWithSpace.Match(rest) },
}

var (
	httpMinor     = regexp.MustCompile(`HTTP/1\.[2-9]`)
	nameWithSpace = regexp.MustCompile(`\n[^:\r\n]* [^:\r\n]*:`)
)

// Compare reports how cand departs from ref (nil when it does not) for the
// input raw. Before the message a candidate rejected by a stricter rule,
// every message must be equal; from it on, the rule must apply to raw
// from that message's offset, and the candidate must have stopped there.
// Without a rule, the messages and the error status must be equal.
func Compare(raw []byte, maxHeaderBytes int, ref, cand Transcript) error {
	upto := len(cand.Messages)
	if cand.Rule != "" {
		applies, known := Stricter[cand.Rule]
		if !known {
			return fmt.Errorf("candidate rejected by unknown rule %q", cand.Rule)
		}
		if cand.RuleAt < 0 || cand.RuleAt > len(raw) || !applies(raw[cand.RuleAt:], maxHeaderBytes) {
			return fmt.Errorf("candidate rejected by rule %q at offset %d where it does not apply", cand.Rule, cand.RuleAt)
		}
		// The message it rejected in (a body error) may be recorded or not.
		if n := len(cand.Messages); n > 0 && cand.Messages[n-1].BodyErr {
			upto = n - 1
		}
		if upto > len(ref.Messages) {
			return fmt.Errorf("candidate has %d messages before its rule, net/http only %d", upto, len(ref.Messages))
		}
	} else if len(ref.Messages) != len(cand.Messages) {
		return fmt.Errorf("net/http handed over %d messages, candidate %d", len(ref.Messages), len(cand.Messages))
	}
	for i := 0; i < upto; i++ {
		if d := diff(ref.Messages[i], cand.Messages[i]); d != "" {
			return fmt.Errorf("message %d: %s", i, d)
		}
	}
	if cand.Rule == "" && ref.Status != cand.Status {
		return fmt.Errorf("net/http ended with status %d, candidate %d", ref.Status, cand.Status)
	}
	return nil
}

func diff(a, b Message) string {
	if a.BodyErr || b.BodyErr {
		if a.BodyErr != b.BodyErr {
			return fmt.Sprintf("body error: net/http %v, candidate %v", a.BodyErr, b.BodyErr)
		}
		// Both failed: what was read before the failure is not compared.
		a.Body, b.Body, a.Trailer, b.Trailer = nil, nil, nil, nil
	}
	as, bs := fmt.Sprintf("%+v", a), fmt.Sprintf("%+v", b)
	if as != bs {
		return fmt.Sprintf("\n net/http:  %s\n candidate: %s", as, bs)
	}
	return ""
}
