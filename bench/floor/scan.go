package floor

import (
	"bytes"
)

// scanner is the other way to do parser's work: the heads are checked and
// rewritten in place, byte by byte, with no per-request allocation (the
// way nginx works in its request's memory pool). It validates what a
// strict parser must (request line, version, token names, no control
// bytes in values, no obs-fold or bare LF, one Host on HTTP/1.1, one
// Content-Length on answers) but, unlike internal/h1, is not held to
// net/http by a differential test: it is here to measure what an
// allocation-free event-loop path would cost, not to be one.
type scanner struct {
	out  []byte
	head []bool // per request sent and not yet answered, oldest first: was it HEAD
}

var crlf = []byte("\r\n")

// hopByHop lists, lower-case, the hop-by-hop fields and the ones the proxy
// sets itself.
var hopByHop = [...]string{"connection", "keep-alive", "proxy-connection", "te", "trailer",
	"transfer-encoding", "upgrade", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}

// hopByHopField reports whether name (any case) is one of hopByHop.
func hopByHopField(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	c := name[0] | 0x20
	if c != 'c' && c != 'k' && c != 'p' && c != 't' && c != 'u' && c != 'x' {
		return false
	}
	for _, h := range hopByHop {
		if len(name) == len(h) && h[0] == c && bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	return false
}

// tokenByte marks the bytes of an RFC 9110 token.
var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}

// fields walks the field lines of a head (after its first line) and calls
// f with each name and value (optional whitespace trimmed) and the whole
// line, stopping at the blank line. It refuses bare LF, obs-fold, a name
// that is not a token and control bytes in a value.
func fields(rest []byte, f func(name, value, line []byte) error) error {
	for {
		i := bytes.Index(rest, crlf)
		if i < 0 {
			return errFrame
		}
		line := rest[:i]
		rest = rest[i+2:]
		if len(line) == 0 {
			return nil
		}
		if bytes.IndexByte(line, '\n') >= 0 || line[0] == ' ' || line[0] == '\t' {
			return errFrame
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || !isToken(line[:colon]) {
			return errFrame
		}
		value := bytes.Trim(line[colon+1:], " \t")
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return errFrame
			}
		}
		if err := f(line[:colon], value, line); err != nil {
			return err
		}
	}
}

func (s *scanner) request(head []byte, clientIP string) ([]byte, error) {
	i := bytes.Index(head, crlf)
	line := head[:i]
	sp1, sp2 := bytes.IndexByte(line, ' '), bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 || !isToken(line[:sp1]) {
		return nil, errFrame
	}
	proto := line[sp2+1:]
	if !bytes.Equal(proto, []byte("HTTP/1.1")) && !bytes.Equal(proto, []byte("HTTP/1.0")) {
		return nil, errFrame
	}
	for _, c := range line[sp1+1 : sp2] {
		if c <= ' ' || c == 0x7f {
			return nil, errFrame
		}
	}
	out := append(append(s.out[:0], line...), crlf...)
	var host []byte
	hosts := 0
	err := fields(head[i+2:], func(name, value, l []byte) error {
		switch {
		case bytes.EqualFold(name, []byte("content-length")), bytes.EqualFold(name, []byte("transfer-encoding")):
			return errFrame // a body: not forwarded by the instrument
		case bytes.EqualFold(name, []byte("host")):
			hosts++
			host = value
		case hopByHopField(name):
			return nil
		}
		out = append(append(out, l...), crlf...)
		return nil
	})
	if err != nil || hosts > 1 || (hosts == 0 && proto[7] == '1') {
		return nil, errFrame
	}
	out = append(append(append(out, "X-Forwarded-For: "...), clientIP...), crlf...)
	out = append(out, "X-Forwarded-Proto: http\r\n"...)
	out = append(append(append(out, "X-Forwarded-Host: "...), host...), "\r\n\r\n"...)
	s.out = out
	s.head = append(s.head, sp1 == 4 && bytes.Equal(line[:4], []byte("HEAD")))
	return out, nil
}

func (s *scanner) answerHead(head []byte) ([]byte, int, error) {
	if len(s.head) == 0 {
		return nil, 0, errFrame // an answer nobody asked for
	}
	i := bytes.Index(head, crlf)
	line := head[:i]
	// "HTTP/1.x NNN reason": three digits from 200 up (1xx is not handled).
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		line[9] < '2' || line[9] > '5' || line[10] < '0' || line[10] > '9' || line[11] < '0' || line[11] > '9' ||
		(len(line) > 12 && line[12] != ' ') {
		return nil, 0, errFrame
	}
	out := append(append(append(s.out[:0], "HTTP/1.1"...), line[8:]...), crlf...)
	n := -1
	err := fields(head[i+2:], func(name, value, l []byte) error {
		switch {
		case bytes.EqualFold(name, []byte("content-length")):
			if n >= 0 || len(value) == 0 || len(value) > 10 {
				return errFrame
			}
			n = 0
			for _, c := range value {
				if c < '0' || c > '9' {
					return errFrame
				}
				n = n*10 + int(c-'0')
			}
		case hopByHopField(name):
			if bytes.EqualFold(name, []byte("transfer-encoding")) {
				return errFrame // chunked answers are not handled
			}
			return nil
		}
		out = append(append(out, l...), crlf...)
		return nil
	})
	if err != nil || n < 0 || n > 1<<30 {
		return nil, 0, errFrame
	}
	if s.head[0] {
		n = 0
	}
	s.out = append(out, crlf...)
	return s.out, n, nil
}

func (s *scanner) answered(out []byte) {
	s.out = out[:0]
	s.head = s.head[:copy(s.head, s.head[1:])]
}
