package h1

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// ReadResponse reads the head of an app's answer to a request with method
// from br, and returns the *http.Response that http.ReadResponse would for
// the same bytes (Status, StatusCode, Proto, Header, ContentLength,
// TransferEncoding, Close, Trailer) with a Body that frames the message the
// same way, so that reading it to io.EOF leaves br at the next answer.
// FuzzResponseDifferential holds it to that.
//
// into, when it is an empty map and the answer is not an interim 1xx, is
// used as the answer's Header: a proxy passes its ResponseWriter's header
// and saves building a map only to copy it. Otherwise a new map is made.
//
// Stricter than http.ReadResponse, with the request parser's rules: a line
// ending in a bare LF (bare-lf), obs-fold (obs-fold), a head longer than
// lim.MaxHeaderBytes (head-size; http.ReadResponse has no limit), both
// Content-Length and Transfer-Encoding (cl-and-te), repeated equal
// Content-Length fields (duplicate-cl), Transfer-Encoding on HTTP/1.0
// (te-http10), a field name with a space (name-space), a status code that
// is not three digits from 100 up (status-code), a CR inside the status
// line (cr-in-line); in a chunked body, chunk-ext and trailer-name. RFC
// 9112 lets a proxy refuse each of these with 502 (section 5.2 for
// obs-fold, 6.3 for the framing). Errors are *Error with Status 502.
func ReadResponse(br *bufio.Reader, method string, lim Limits, into http.Header) (*http.Response, error) {
	limit := lim.MaxHeaderBytes
	if limit <= 0 {
		limit = http.DefaultMaxHeaderBytes
	}
	head, err := readResponseHead(br, limit)
	if err != nil {
		return nil, err
	}
	wasEmpty := len(into) == 0
	res, err := parseResponse(br, method, head, into)
	if err != nil && wasEmpty {
		// Fields of a refused answer must not reach the client with the
		// gateway's own error page. (A non-empty into is never used.)
		clear(into)
	}
	return res, err
}

// readResponseHead is readHead for an answer: no leading-empty rule (the
// status line's own check refuses it) and EOF before a byte is
// io.ErrUnexpectedEOF, as http.ReadResponse reports it.
func readResponseHead(br *bufio.Reader, limit int) (string, error) {
	if _, err := br.Peek(1); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	head, err := readHeadLimited(br, limit)
	if err != nil {
		return "", asResponseError(err)
	}
	return head, nil
}

// asResponseError turns the request parser's errors into the gateway's.
func asResponseError(err error) error {
	if e, ok := err.(*Error); ok {
		return &Error{Status: http.StatusBadGateway, Rule: e.Rule, Msg: "answer: " + e.Msg}
	}
	return err
}

func badResponse(msg string) *Error {
	return &Error{Status: http.StatusBadGateway, Msg: "answer: " + msg}
}

func parseResponse(br *bufio.Reader, method, head string, into http.Header) (*http.Response, error) {
	lines, err := checkLineEnds(head)
	if e, ok := err.(*Error); ok && e.Rule == "" {
		// A lone CR: http.ReadResponse keeps one in the status line.
		return nil, &Error{Status: http.StatusBadGateway, Rule: RuleCRInLine, Msg: "answer: CR inside a line"}
	} else if err != nil {
		return nil, asResponseError(err)
	}
	line, rest, _ := strings.Cut(head, "\r\n")
	res := new(http.Response)
	proto, status, ok := strings.Cut(line, " ")
	if !ok {
		return nil, badResponse("malformed status line")
	}
	res.Proto = proto
	res.Status = strings.TrimLeft(status, " ")
	code, _, _ := strings.Cut(res.Status, " ")
	if len(code) != 3 {
		return nil, badResponse("malformed status code")
	}
	for i := 0; i < 3; i++ {
		if code[i] < '0' || code[i] > '9' {
			if n, err := strconv.Atoi(code); err == nil && n >= 0 {
				// http.ReadResponse takes "+20" for 20.
				return nil, &Error{Status: http.StatusBadGateway, Rule: RuleStatusCode, Msg: "answer: status code not three digits"}
			}
			return nil, badResponse("malformed status code")
		}
	}
	res.StatusCode = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	if res.StatusCode < 100 {
		// http.ReadResponse takes "000"; no server can answer with it
		// (net/http's WriteHeader panics on a code below 100).
		return nil, &Error{Status: http.StatusBadGateway, Rule: RuleStatusCode, Msg: "answer: status code below 100"}
	}
	switch proto {
	case "HTTP/1.1":
		res.ProtoMajor, res.ProtoMinor = 1, 1
	case "HTTP/1.0":
		res.ProtoMajor, res.ProtoMinor = 1, 0
	default:
		if res.ProtoMajor, res.ProtoMinor, ok = http.ParseHTTPVersion(proto); !ok {
			return nil, badResponse("malformed HTTP version")
		}
	}
	interim := res.StatusCode/100 == 1 && res.StatusCode != http.StatusSwitchingProtocols
	if into == nil || len(into) > 0 || interim {
		into = nil
	}
	h, nameWithSpace, err := parseFieldsInto(into, rest, lines-2, false)
	if err != nil {
		return nil, asResponseError(err)
	}
	if nameWithSpace {
		return nil, &Error{Status: http.StatusBadGateway, Rule: RuleNameSpace, Msg: "answer: field name with a space"}
	}
	res.Header = h
	if hp := h["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}

	// net/http's readTransfer, in its order.
	major, minor := res.ProtoMajor, res.ProtoMinor
	res.Close = shouldClose(major, minor, h)
	if res.Close && (major > 1 || major == 1 && minor != 0) {
		delete(h, "Connection") // net/http drops a "close" it acted on
	}
	if major == 0 && minor == 0 {
		major, minor = 1, 1
	}
	chunked := false
	if te, ok := h["Transfer-Encoding"]; ok {
		delete(h, "Transfer-Encoding")
		if major == 1 && minor == 0 || major < 1 {
			return nil, &Error{Status: http.StatusBadGateway, Rule: RuleTEHTTP10, Msg: "answer: Transfer-Encoding on HTTP/1.0"}
		}
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return nil, badResponse("unsupported transfer encoding")
		}
		chunked = true
	}
	cl := h["Content-Length"]
	if len(cl) > 1 {
		for _, v := range cl[1:] {
			if trimOWS(v) != trimOWS(cl[0]) {
				return nil, badResponse("conflicting Content-Length fields")
			}
		}
		return nil, &Error{Status: http.StatusBadGateway, Rule: RuleDuplicateCL, Msg: "answer: duplicate Content-Length fields"}
	}
	declared := int64(-1)
	if len(cl) == 1 {
		v := trimOWS(cl[0])
		n, err := strconv.ParseUint(v, 10, 63)
		if v == "" || err != nil {
			return nil, badResponse("bad Content-Length")
		}
		declared = int64(n)
		if chunked {
			return nil, &Error{Status: http.StatusBadGateway, Rule: RuleCLAndTE, Msg: "answer: both Content-Length and Transfer-Encoding"}
		}
	}
	noBody := method == http.MethodHead || res.StatusCode/100 == 1 || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified
	length := declared // the body's real length; -1: chunked or until close
	switch {
	case noBody:
		length = 0
	case chunked:
		length = -1
	case declared < 0:
		delete(h, "Content-Length") // an empty list (net/http's Del)
	}
	res.ContentLength = length
	if method == http.MethodHead {
		res.ContentLength = declared
	}
	if chunked {
		res.TransferEncoding = []string{"chunked"}
		trailer, ok := trailerKeys(h)
		if !ok {
			return nil, badResponse("bad trailer key")
		}
		res.Trailer = trailer
	}
	if length == -1 && !chunked && !noBody {
		res.Close = true // the body ends when the app closes
	}
	switch {
	case chunked && !noBody:
		res.Body = &chunkedBody{br: br, trailer: &res.Trailer}
	case chunked, length == 0:
		res.Body = http.NoBody
	case length > 0:
		res.Body = &lengthBody{br: br, n: length}
	default:
		res.Body = &closeBody{br: br}
	}
	return res, nil
}

// closeBody is an answer whose end is the connection's: br to io.EOF.
type closeBody struct {
	br     *bufio.Reader
	closed bool
}

func (b *closeBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.br.Read(p)
}

func (b *closeBody) Close() error {
	b.closed = true
	return nil
}
