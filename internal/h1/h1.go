// Package h1 is a strict HTTP/1.1 request parser for the proxy's own
// connection loop (issue #17: net/http's server costs ~28 of the proxy's 30
// allocations per request and much of its CPU).
//
// ReadRequest reads one request head from a *bufio.Reader and returns the
// *http.Request that net/http's server would hand a handler for the same
// bytes (Method, URL, RequestURI, Proto, Header with canonical keys and the
// same value order, Host, ContentLength, TransferEncoding, Close, Trailer),
// with a Body that frames the message exactly, so that reading the body to
// its end leaves the reader at the next pipelined request. It never accepts
// a request net/http's server rejects and never frames a message
// differently; FuzzDifferential checks both against a real net/http Server.
// Errors are *Error values carrying the status the server must answer.
//
// Where net/http accepts something obsolete or ambiguous, this parser
// rejects it. Each such rule has a name (Error.Rule), and the differential
// test knows each one (h1test.Stricter):
//
//	rule              net/http's server                      h1
//	leading-empty     skips up to 4 CR/LF bytes before a     400: a request starts with
//	                  request that follows a POST            its request line
//	bare-lf           accepts LF alone as a line end in      400: every head and trailer
//	                  the head and trailers                  line ends in CRLF
//	obs-fold          joins a line starting with SP/HTAB     400
//	                  to the previous header value
//	head-size         431 once MaxHeaderBytes+4096 bytes     431 when the head (request
//	                  are read without the head's end        line to blank line) exceeds
//	                  (how much depends on buffering)        Limits.MaxHeaderBytes
//	http-minor        serves HTTP/1.2 ... HTTP/1.9           505
//	h2-preface        hands "PRI * HTTP/2.0" to a handler    505
//	cl-and-te         drops Content-Length, uses chunked     400
//	duplicate-cl      merges equal Content-Length fields     400
//	te-http10         ignores Transfer-Encoding on 1.0       400
//	expect            417 unless the first Expect field      417 unless Expect is one field
//	                  holds a 100-continue token             that is exactly 100-continue
//	chunk-ext         accepts any bytes after ';' in a       400 unless chunk-ext grammar
//	                  chunk-size line                        (RFC 9112 7.1.1)
//	trailer-name      accepts a trailer field name with      400: trailer names are tokens
//	                  spaces before the colon
//
// The last two rules, like every other chunked-body failure, surface as the
// body's read error; a trailer section (4096 bytes) and a chunk-size line
// (4094) are limited exactly as net/http limits them.
//
// ReadResponse is the same parser for the other direction: the head of an
// app's answer, held to http.ReadResponse by FuzzResponseDifferential, with
// the rules above that apply to answers and three of their own (see its
// comment). The proxy reads every answer from an app with it.
//
// The connection loop, not the parser, owns everything about responses:
// "100 Continue" (net/http sends it on the first body read of an HTTP/1.1
// request with a non-zero length), answering "OPTIONS *" (net/http does so
// itself unless DisableGeneralOptionsHandler), timeouts, and whether to
// read another request: KeepAlive gives net/http's answer.
package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Limits bound what one request may make the parser hold.
type Limits struct {
	// MaxHeaderBytes bounds the request head: request line, header lines
	// and the blank line. Zero means http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
}

// Rule names a case net/http's server accepts and h1 rejects (see the
// package comment).
type Rule string

// The stricter rules, in the package comment's order.
const (
	RuleLeadingEmpty Rule = "leading-empty"
	RuleBareLF       Rule = "bare-lf"
	RuleObsFold      Rule = "obs-fold"
	RuleHeadSize     Rule = "head-size"
	RuleHTTPMinor    Rule = "http-minor"
	RuleH2Preface    Rule = "h2-preface"
	RuleCLAndTE      Rule = "cl-and-te"
	RuleDuplicateCL  Rule = "duplicate-cl"
	RuleTEHTTP10     Rule = "te-http10"
	RuleExpect       Rule = "expect"
	RuleChunkExt     Rule = "chunk-ext"
	RuleTrailerName  Rule = "trailer-name"
	// Answers only (ReadResponse): a request refuses these cases without
	// a rule, as net/http's server does.
	RuleNameSpace  Rule = "name-space"
	RuleStatusCode Rule = "status-code"
	RuleCRInLine   Rule = "cr-in-line"
)

// Rules lists every stricter rule of ReadRequest.
var Rules = []Rule{
	RuleLeadingEmpty, RuleBareLF, RuleObsFold, RuleHeadSize, RuleHTTPMinor, RuleH2Preface,
	RuleCLAndTE, RuleDuplicateCL, RuleTEHTTP10, RuleExpect, RuleChunkExt, RuleTrailerName,
}

// Error is a request the server must refuse: it answers Status and closes
// the connection. Rule is set when net/http would have accepted the bytes.
type Error struct {
	Status int // 400, 417, 431, 501 or 505
	Rule   Rule
	Msg    string
}

func (e *Error) Error() string {
	if e.Rule != "" {
		return "h1: " + strconv.Itoa(e.Status) + " " + e.Msg + " (stricter than net/http: " + string(e.Rule) + ")"
	}
	return "h1: " + strconv.Itoa(e.Status) + " " + e.Msg
}

func bad(msg string) *Error                        { return &Error{Status: http.StatusBadRequest, Msg: msg} }
func strict(status int, r Rule, msg string) *Error { return &Error{Status: status, Rule: r, Msg: msg} }

// maxChunkLine is net/http's limit on a chunk-size line without its CRLF
// (its chunked reader reads the line into a 4096-byte bufio buffer).
const maxChunkLine = 4094

// maxTrailerBytes is net/http's limit on a trailer section including its
// final blank line: it must end within the server's 4096-byte buffer.
const maxTrailerBytes = 4096

// ReadRequest reads one request head from br. At a clean end of input
// before any byte of a request it returns io.EOF, and a read error from br
// as it is (net/http hangs up without an answer on both); a malformed or
// refused request, a head cut short by EOF included, is an *Error. The returned request's Body reads from br and must be read to
// io.EOF before the next ReadRequest on br.
func ReadRequest(br *bufio.Reader, lim Limits) (*http.Request, error) {
	limit := lim.MaxHeaderBytes
	if limit <= 0 {
		limit = http.DefaultMaxHeaderBytes
	}
	head, err := readHead(br, limit)
	if err != nil {
		return nil, err
	}
	return parseHead(br, head)
}

// readHead returns the request head, request line through blank line, as
// one string (one allocation; every field of the request is a substring).
func readHead(br *bufio.Reader, limit int) (string, error) {
	first, err := br.Peek(1)
	if len(first) == 0 {
		return "", err // io.EOF: a clean end between requests
	}
	if first[0] == '\r' || first[0] == '\n' {
		return "", strict(http.StatusBadRequest, RuleLeadingEmpty, "empty line before the request line")
	}
	return readHeadLimited(br, limit)
}

// readHeadLimited reads a head, first line through blank line, of at most
// limit bytes.
func readHeadLimited(br *bufio.Reader, limit int) (string, error) {
	// Fast path: the whole head is already buffered.
	if n := br.Buffered(); n > 0 {
		buf, _ := br.Peek(n)
		if end := headEnd(buf, 0); end > 0 {
			if end > limit {
				return "", strict(http.StatusRequestHeaderFieldsTooLarge, RuleHeadSize, "request head too large")
			}
			s := string(buf[:end])
			_, _ = br.Discard(end) // end <= Buffered: cannot fail
			return s, nil
		}
	}
	// Slow path: collect the head across buffer fills.
	var acc []byte
	for {
		frag, err := br.ReadSlice('\n')
		from := len(acc) - 2
		acc = append(acc, frag...)
		if end := headEnd(acc, max(from, 0)); end > 0 {
			if end > limit {
				return "", strict(http.StatusRequestHeaderFieldsTooLarge, RuleHeadSize, "request head too large")
			}
			return string(acc), nil
		}
		if len(acc) > limit {
			return "", strict(http.StatusRequestHeaderFieldsTooLarge, RuleHeadSize, "request head too large")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return "", bad("request head cut short")
		}
		if err != nil {
			return "", err
		}
	}
}

// headEnd returns the length of the head in b (through the first empty
// line, "\n\n" or "\n\r\n", bare LFs included so that they are rejected
// rather than waited past), or 0 when b holds no complete head. It looks
// for a line end at from or after.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return 0
}

// checkLineEnds checks that every line of head ends in CRLF and that no
// CR occurs anywhere else (net/http's server rejects a lone CR in each
// place it could occur: method, target, version, name, value), and
// returns the number of lines. (Each LF preceded by a CR, and as many CRs
// as LFs: no lone CR.)
func checkLineEnds(head string) (lines int, err error) {
	for i := 0; ; {
		j := strings.IndexByte(head[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		if i == 0 || head[i-1] != '\r' {
			return 0, strict(http.StatusBadRequest, RuleBareLF, "line ends in a bare LF")
		}
		lines++
		i++
	}
	if strings.Count(head, "\r") != lines {
		return 0, bad("CR inside a line")
	}
	return lines, nil
}

// parseHead turns a complete head into a request, applying net/http's
// checks in net/http's order so that the status is the same one.
func parseHead(br *bufio.Reader, head string) (*http.Request, error) {
	lines, err := checkLineEnds(head)
	if err != nil {
		return nil, err
	}
	line, rest, _ := strings.Cut(head, "\r\n")

	// The request and its URL in one allocation.
	a := new(requestAlloc)
	req := &a.req
	var ok bool
	req.Method, req.RequestURI, req.Proto, ok = parseRequestLine(line)
	if !ok {
		return nil, bad("malformed request line")
	}
	if !isToken(req.Method) {
		return nil, bad("invalid method")
	}
	switch req.Proto {
	case "HTTP/1.1":
		req.ProtoMajor, req.ProtoMinor = 1, 1
	case "HTTP/1.0":
		req.ProtoMajor, req.ProtoMinor = 1, 0
	default:
		req.ProtoMajor, req.ProtoMinor, ok = http.ParseHTTPVersion(req.Proto)
		if !ok {
			return nil, bad("malformed HTTP version")
		}
	}
	u, err := parseTarget(&a.url, req.Method, req.RequestURI)
	if err != nil {
		return nil, bad("invalid request target")
	}
	req.URL = u

	h, nameWithSpace, err := parseFields(rest, lines-2, false)
	if err != nil {
		return nil, err
	}
	req.Header = h
	if len(h["Host"]) > 1 {
		return nil, bad("too many Host headers")
	}
	req.Host = u.Host
	if req.Host == "" {
		if v := h["Host"]; len(v) > 0 {
			req.Host = v[0]
		}
	}
	if hp := h["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	req.Close = shouldClose(req.ProtoMajor, req.ProtoMinor, h)

	// Framing, net/http's readTransfer order: Transfer-Encoding (501), then
	// Content-Length (400), then Trailer (400).
	te, haveTE := h["Transfer-Encoding"]
	chunked := false
	if haveTE && req.ProtoMajor == 0 && req.ProtoMinor != 0 {
		// net/http ignores it below HTTP/1.1, but reads "HTTP/0.0" as 1.1
		// here; 505 follows either way.
		delete(h, "Transfer-Encoding")
		haveTE = false
	}
	if haveTE {
		if req.ProtoMajor == 1 && req.ProtoMinor == 0 {
			return nil, strict(http.StatusBadRequest, RuleTEHTTP10, "Transfer-Encoding on HTTP/1.0")
		}
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return nil, &Error{Status: http.StatusNotImplemented, Msg: "unsupported transfer encoding"}
		}
		delete(h, "Transfer-Encoding")
		chunked = true
	}
	cl := h["Content-Length"]
	if len(cl) > 1 {
		for _, v := range cl[1:] {
			if trimOWS(v) != trimOWS(cl[0]) {
				return nil, bad("conflicting Content-Length fields")
			}
		}
		return nil, strict(http.StatusBadRequest, RuleDuplicateCL, "duplicate Content-Length fields")
	}
	length := int64(0)
	if len(cl) == 1 {
		v := trimOWS(cl[0])
		if v == "" {
			return nil, bad("empty Content-Length")
		}
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			return nil, bad("bad Content-Length")
		}
		length = int64(n)
		if chunked {
			return nil, strict(http.StatusBadRequest, RuleCLAndTE, "both Content-Length and Transfer-Encoding")
		}
	}
	if chunked {
		length = -1
		if err := fixTrailer(req); err != nil {
			return nil, err
		}
		req.TransferEncoding = []string{"chunked"}
	}
	req.ContentLength = length

	// net/http's server checks, in its order.
	if req.ProtoMajor != 1 {
		if req.Method == "PRI" && req.RequestURI == "*" && req.ProtoMajor == 2 && req.ProtoMinor == 0 {
			return nil, strict(http.StatusHTTPVersionNotSupported, RuleH2Preface, "HTTP/2 preface")
		}
		return nil, &Error{Status: http.StatusHTTPVersionNotSupported, Msg: "unsupported protocol version"}
	}
	if req.ProtoMinor > 1 {
		return nil, strict(http.StatusHTTPVersionNotSupported, RuleHTTPMinor, "unsupported protocol version")
	}
	hosts, haveHost := h["Host"]
	if req.ProtoMinor == 1 && (!haveHost || len(hosts) == 0) && req.Method != "CONNECT" {
		return nil, bad("missing required Host header")
	}
	if len(hosts) == 1 && !validHost(hosts[0]) {
		return nil, bad("malformed Host header")
	}
	if nameWithSpace {
		return nil, bad("invalid header name")
	}
	delete(h, "Host")
	if ex, ok := h["Expect"]; ok {
		first := ex[0]
		if len(ex) != 1 || !strings.EqualFold(first, "100-continue") {
			if first != "" && !hasToken(first, "100-continue") {
				return nil, &Error{Status: http.StatusExpectationFailed, Msg: "unsupported expectation"}
			}
			if len(ex) != 1 || first != "" {
				return nil, strict(http.StatusExpectationFailed, RuleExpect, "unsupported expectation")
			}
		}
	}

	switch {
	case chunked:
		req.Body = &chunkedBody{br: br, trailer: &req.Trailer}
	case length > 0:
		req.Body = &lengthBody{br: br, n: length}
	default:
		req.Body = http.NoBody
	}
	return req, nil
}

func parseRequestLine(line string) (method, target, proto string, ok bool) {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return "", "", "", false
	}
	return method, target, proto, true
}

// parseTarget is net/http's: CONNECT's authority-form parsed as a URL's
// host, everything else by url.ParseRequestURI; a plain origin-form path
// skips the URL parser.
func parseTarget(fast *url.URL, method, target string) (*url.URL, error) {
	if method != "CONNECT" {
		path, query, hasQuery := strings.Cut(target, "?")
		if plainPath(path) && plainQuery(query) {
			*fast = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
			return fast, nil
		}
	}
	justAuthority := method == "CONNECT" && !strings.HasPrefix(target, "/")
	raw := target
	if justAuthority {
		raw = "http://" + target
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return nil, err
	}
	if justAuthority {
		u.Scheme = ""
	}
	return u, nil
}

// plainPath reports whether url.ParseRequestURI would return just
// &url.URL{Path: s}: an absolute path of unreserved and sub-delim bytes,
// no '%' (unescaping), '#', ';', bytes url escapes differently (which set
// RawPath), or "//" at the start
// (which url.Parse reads as an authority).
func plainPath(s string) bool {
	if len(s) == 0 || s[0] != '/' || strings.HasPrefix(s, "//") {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !pathByte[s[i]] {
			return false
		}
	}
	return true
}

// plainQuery reports whether url.ParseRequestURI keeps q as RawQuery
// unchanged: it only rejects control bytes there.
func plainQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

var pathByte = alnumAnd("-._~/$&+,=:@")

// requestAlloc holds what every request needs, allocated together.
type requestAlloc struct {
	req http.Request
	url url.URL
}

// parseFields parses header (or trailer) lines, each ending in CRLF, up to
// and including the blank line. n is a hint of the field count.
// nameWithSpace reports a field name with a space in it, which net/http's
// header reader accepts and its server rejects later (after the version
// check, so the status can be 505); trailers reject it at once.
func parseFields(s string, n int, trailer bool) (h http.Header, nameWithSpace bool, err error) {
	return parseFieldsInto(nil, s, n, trailer)
}

// parseFieldsInto is parseFields into h, an empty map, or a new one when
// h is nil.
func parseFieldsInto(h http.Header, s string, n int, trailer bool) (_ http.Header, nameWithSpace bool, err error) {
	if n < 0 {
		n = 0
	}
	if h == nil {
		h = make(http.Header, n)
	}
	strs := make([]string, n) // backing for single-valued fields
	for {
		line, rest, ok := strings.Cut(s, "\r\n")
		if !ok {
			return nil, false, bad("head cut short")
		}
		s = rest
		if line == "" {
			return h, nameWithSpace, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, false, strict(http.StatusBadRequest, RuleObsFold, "obs-fold line")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, false, bad("header line without a colon")
		}
		key, space, ok := canonicalKey(name)
		if !ok {
			return nil, false, bad("invalid header name")
		}
		if space {
			if trailer {
				return nil, false, strict(http.StatusBadRequest, RuleTrailerName, "trailer name with a space")
			}
			nameWithSpace = true
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
				return nil, false, bad("invalid header value")
			}
		}
		value = trimOWS(value)
		vv := h[key]
		if vv == nil && len(strs) > 0 {
			vv, strs = strs[:1:1], strs[1:]
			vv[0] = value
			h[key] = vv
		} else {
			h[key] = append(vv, value)
		}
	}
}

// canonicalKey returns textproto's canonical form of a field name: token
// bytes with the first letter and each letter after '-' upper case; a name
// with a space (ok, space set) is returned unchanged.
func canonicalKey(name string) (key string, space, ok bool) {
	if name == "" {
		return "", false, false
	}
	canonical := true
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == ' ' {
			space = true
			continue
		}
		if !tokenByte[c] {
			return "", false, false
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	if space || canonical {
		return name, space, true // a substring of the head: no allocation
	}
	var stack [64]byte
	var b []byte
	if len(name) <= len(stack) {
		b = stack[:len(name)]
	} else {
		b = make([]byte, len(name))
	}
	upper = true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
		upper = c == '-'
	}
	if k, ok := commonKey[string(b)]; ok {
		return k, false, true
	}
	return string(b), false, true
}

// commonKey interns the canonical names of common fields, so a lower-case
// "user-agent" costs no allocation either.
var commonKey = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Type", "Cookie", "Date", "Dnt", "Etag", "Expect", "Forwarded",
		"From", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range",
		"If-Unmodified-Since", "Keep-Alive", "Origin", "Pragma", "Priority", "Range", "Referer",
		"Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-Dest", "Sec-Fetch-Mode",
		"Sec-Fetch-Site", "Sec-Fetch-User", "Sec-Websocket-Key", "Sec-Websocket-Version",
		"Sec-Websocket-Extensions", "Sec-Websocket-Protocol", "Te", "Trailer", "Transfer-Encoding",
		"Upgrade", "Upgrade-Insecure-Requests", "User-Agent", "Via", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
	} {
		m[k] = k
	}
	return m
}()

// fixTrailer is net/http's: a chunked request's Trailer fields become the
// keys of req.Trailer (values nil until the trailer section is read).
func fixTrailer(req *http.Request) error {
	trailer, ok := trailerKeys(req.Header)
	if !ok {
		return bad("bad trailer key")
	}
	req.Trailer = trailer
	return nil
}

// trailerKeys removes the Trailer field from h and returns its names as
// the keys of a trailer map (nil when it names none), as net/http's
// fixTrailer does for a chunked message; ok is false when it names a
// field that must not be a trailer.
func trailerKeys(h http.Header) (trailer http.Header, ok bool) {
	vv, present := h["Trailer"]
	if !present {
		return nil, true
	}
	delete(h, "Trailer")
	trailer = make(http.Header)
	for _, v := range vv {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.Trim(f, " \t")
			if f == "" {
				continue
			}
			key := http.CanonicalHeaderKey(f)
			switch key {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return nil, false
			}
			trailer[key] = nil
		}
	}
	if len(trailer) == 0 {
		return nil, true
	}
	return trailer, true
}

// shouldClose is net/http's: HTTP/1.0 closes unless keep-alive is asked
// for; any version closes on a "close" token.
func shouldClose(major, minor int, h http.Header) bool {
	if major < 1 {
		return true
	}
	conv := h["Connection"]
	hasClose := valuesContainToken(conv, "close")
	if major == 1 && minor == 0 {
		return hasClose || !valuesContainToken(conv, "keep-alive")
	}
	return hasClose
}

func valuesContainToken(values []string, token string) bool {
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			if tokenEqual(trimOWS(f), token) {
				return true
			}
		}
	}
	return false
}

// tokenEqual is httpguts's: ASCII case-insensitive, non-ASCII never equal.
func tokenEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] >= 0x80 || lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasToken is net/http's header.go hasToken, used for Expect.
func hasToken(v, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	if v == token {
		return true
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if b := v[sp]; b != token[0] && b|0x20 != token[0] {
			continue
		}
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if strings.EqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

// tokenByte is RFC 9110's tchar.
var tokenByte = alnumAnd("!#$%&'*+-.^_`|~")

// validHost is httpguts.ValidHostHeader: a lenient byte check.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if !hostByte[h[i]] {
			return false
		}
	}
	return true
}

var hostByte = alnumAnd("!$%&()*+,-.:;=[']_~")

// alnumAnd is a byte table of the ASCII letters and digits and extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}

// KeepAlive reports whether net/http's server would read another request
// on the connection after answering req (with a response that carries its
// length): that is not just !req.Close. For HTTP/1.0 net/http keeps the
// connection when the first Connection field has a "keep-alive" token
// anywhere between spaces or commas (even beside "close"); for HTTP/1.1 it
// closes when req.Close is set or that first field has such a "close"
// token ("Connection: foo close"). A connection loop must decide the same
// way, or pipelined requests would be served that net/http drops (or the
// other way round); FuzzDifferential checks this decision too.
func KeepAlive(req *http.Request) bool {
	first := ""
	if v := req.Header["Connection"]; len(v) > 0 {
		first = v[0]
	}
	if req.ProtoMajor == 1 && req.ProtoMinor == 0 {
		return hasToken(first, "keep-alive")
	}
	return !req.Close && !hasToken(first, "close")
}
