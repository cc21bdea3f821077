package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
)

// lengthBody is a Content-Length body: exactly n bytes of br.
type lengthBody struct {
	br     *bufio.Reader
	n      int64
	closed bool
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && b.n == 0 {
		err = io.EOF
	}
	return n, err
}

// Close stops further reads; draining what is left is the connection
// loop's decision (net/http drains up to 256 KiB to keep a connection).
func (b *lengthBody) Close() error {
	b.closed = true
	return nil
}

// chunkedBody decodes a chunked body and, at its end, merges the trailer
// section into *trailer (the message's Trailer), as net/http's body does.
type chunkedBody struct {
	br       *bufio.Reader
	trailer  *http.Header
	n        uint64 // unread bytes of the current chunk
	checkEnd bool   // the CRLF after a chunk's data is still to read
	excess   int64  // net/http's chunk-overhead budget
	err      error
	closed   bool
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	written := 0
	for b.err == nil && len(p) > 0 {
		if b.n == 0 {
			if written > 0 {
				break // do not block on the next chunk header with data in hand
			}
			if b.checkEnd {
				var crlf [2]byte
				if _, err := io.ReadFull(b.br, crlf[:]); err != nil {
					b.err = unexpected(err)
					break
				}
				if crlf != [2]byte{'\r', '\n'} {
					b.err = errors.New("h1: malformed chunked encoding")
					break
				}
				b.checkEnd = false
			}
			b.err = b.beginChunk()
			continue
		}
		q := p
		if uint64(len(q)) > b.n {
			q = q[:b.n]
		}
		n, err := b.br.Read(q)
		written += n
		p = p[n:]
		b.n -= uint64(n)
		if b.n == 0 {
			b.checkEnd = true
		}
		if err != nil {
			b.err = unexpected(err)
		}
	}
	if written > 0 && b.err == io.EOF {
		return written, nil // EOF on the next call, with the trailers merged
	}
	return written, b.err
}

func (b *chunkedBody) Close() error {
	b.closed = true
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// beginChunk reads a chunk-size line; at the last chunk it reads the
// trailer section and returns io.EOF.
func (b *chunkedBody) beginChunk() error {
	line, err := readLine(b.br, maxChunkLine+2)
	if err != nil {
		return err
	}
	// net/http's checks, in its order: CRLF with no other CR, length,
	// overhead budget, hex size.
	if !strings.HasSuffix(line, "\r\n") || strings.IndexByte(line, '\r') != len(line)-2 {
		return errors.New("h1: chunk-size line does not end in CRLF")
	}
	line = line[:len(line)-2]
	if len(line) > maxChunkLine {
		return errors.New("h1: chunk-size line too long")
	}
	b.excess += int64(len(line)) + 2
	line = strings.TrimRight(line, " \t")
	size, ext, hasExt := strings.Cut(line, ";")
	n, err := parseHex(size)
	if err != nil {
		return err
	}
	b.excess -= 16 + 2*int64(n)
	b.excess = max(b.excess, 0)
	if b.excess > 16*1024 {
		return errors.New("h1: chunked encoding contains too much non-data")
	}
	if hasExt && !validChunkExt(ext) {
		return strict(http.StatusBadRequest, RuleChunkExt, "malformed chunk extension")
	}
	b.n = n
	if n == 0 {
		if err := b.readTrailer(); err != nil {
			return err
		}
		return io.EOF
	}
	return nil
}

// readLine reads through the next LF, at most limit bytes.
func readLine(br *bufio.Reader, limit int) (string, error) {
	var acc []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(acc)+len(frag) > limit {
			return "", errors.New("h1: line too long")
		}
		if err == nil && acc == nil {
			return string(frag), nil
		}
		acc = append(acc, frag...)
		if err == nil {
			return string(acc), nil
		}
		if err != bufio.ErrBufferFull {
			return "", unexpected(err)
		}
	}
}

func parseHex(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("h1: empty chunk size")
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, errors.New("h1: invalid byte in chunk size")
		}
		if i == 16 {
			return 0, errors.New("h1: chunk size too large")
		}
		n = n<<4 | uint64(c)
	}
	return n, nil
}

// validChunkExt checks what follows the first ';' of a chunk-size line
// (trailing whitespace already removed) against RFC 9112 7.1.1:
// chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
func validChunkExt(s string) bool {
	for {
		s = trimLeftWS(s)
		i := 0
		for i < len(s) && tokenByte[s[i]] {
			i++
		}
		if i == 0 {
			return false
		}
		s = trimLeftWS(s[i:])
		if s != "" && s[0] == '=' {
			s = trimLeftWS(s[1:])
			if s != "" && s[0] == '"' {
				rest, ok := skipQuoted(s)
				if !ok {
					return false
				}
				s = rest
			} else {
				i = 0
				for i < len(s) && tokenByte[s[i]] {
					i++
				}
				if i == 0 {
					return false
				}
				s = s[i:]
			}
			s = trimLeftWS(s)
		}
		if s == "" {
			return true
		}
		if s[0] != ';' {
			return false
		}
		s = s[1:]
	}
}

// skipQuoted returns what follows the quoted-string at the start of s.
func skipQuoted(s string) (string, bool) {
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return s[i+1:], true
		case c == '\\':
			i++
			if i >= len(s) || !qdByte(s[i]) && s[i] != '"' && s[i] != '\\' {
				return "", false
			}
		case !qdByte(c):
			return "", false
		}
	}
	return "", false
}

// qdByte is qdtext: HTAB, SP, VCHAR except '"' and '\', obs-text.
func qdByte(c byte) bool {
	return c == '\t' || c == ' ' || c == 0x21 || 0x23 <= c && c <= 0x5b || 0x5d <= c && c <= 0x7e || c >= 0x80
}

func trimLeftWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}

// readTrailer reads the trailer section after the last chunk and merges
// its fields into req.Trailer (net/http: body.readTrailer).
func (b *chunkedBody) readTrailer() error {
	var acc []byte
	for {
		frag, err := b.br.ReadSlice('\n')
		acc = append(acc, frag...)
		if len(acc) > maxTrailerBytes {
			return errors.New("h1: trailer section too long")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return unexpected(err)
		}
		if len(acc) == 2 && acc[0] == '\r' || len(acc) == 1 {
			break // "\r\n" or "\n": checked below
		}
		if n := len(acc); n >= 3 && acc[n-2] == '\r' && acc[n-3] == '\n' || n >= 2 && acc[n-2] == '\n' {
			break
		}
	}
	s := string(acc)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\n':
			if i == 0 || s[i-1] != '\r' {
				return strict(http.StatusBadRequest, RuleBareLF, "trailer line ends in a bare LF")
			}
		case '\r':
			if i+1 >= len(s) || s[i+1] != '\n' {
				return errors.New("h1: CR inside a trailer line")
			}
		}
	}
	if s == "\r\n" {
		return nil
	}
	h, _, err := parseFields(s, strings.Count(s, "\n")-1, true)
	if err != nil {
		return err
	}
	if *b.trailer == nil {
		*b.trailer = h
		return nil
	}
	for k, v := range h {
		(*b.trailer)[k] = v
	}
	return nil
}
