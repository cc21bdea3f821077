package h1

import "bytes"

// ScanRequest is the first brick of issue #17's event-loop request path:
// it reads a request head where it lies in a connection's read buffer,
// allocating nothing, and says which path may serve it. It does not parse
// every request ReadRequest parses. It recognizes the common shape of a
// body-less request (what browsers, curl, load generators and health
// checkers send) and gives every other request, malformed ones included,
// to the full path, which answers exactly as net/http would:
//
//	Fast      the head is complete, and ReadRequest would return the same
//	          request: same length, method, target, version, fields (names
//	          case-folded to the same canonical keys, values trimmed the
//	          same way, in the same order), Host, no body, and the same
//	          KeepAlive decision (FuzzScanDifferential holds it to that).
//	NeedMore  no verdict yet: the head has not ended and is still under
//	          the limit (maxHeaderBytes, at most MaxScanHead).
//	Slow      hand the bytes to ReadRequest. A request goes here when its
//	          head is over the limit, or when it has any of: a
//	          body or framing fields (Content-Length, Transfer-Encoding,
//	          Trailer), Expect, Upgrade, TE, Pragma (net/http adds
//	          Cache-Control for it), a Connection field other than one
//	          "close" or "keep-alive" token, a field named Close, two Host
//	          fields or none on HTTP/1.1, two of one forwarding-record field,
//	          an underscore spelling of any name above ("X_Forwarded_For"),
//	          an absolute-form, "*" or "//" target, a target byte outside
//	          the plain set (see fastTarget), a version other than
//	          HTTP/1.0 and HTTP/1.1, more than MaxScanFields fields, or
//	          anything a strict parser rejects (bare LF, lone CR, obs-fold,
//	          a name that is not a token, a control byte in a value).
//
// Being narrow is the safety argument: a request the fast path takes is
// one on which net/http, ReadRequest and ScanRequest cannot disagree, and
// the fuzz test checks the one direction that matters (Fast implies
// ReadRequest agrees); a Slow verdict costs only speed.
func ScanRequest(b []byte, maxHeaderBytes int, h *RequestHead) Verdict {
	end, v := findHead(b, maxHeaderBytes)
	if v == Fast && !h.scan(b[:end]) {
		return Slow
	}
	return v
}

// findHead finds the head at the start of b: its length and Fast, or
// NeedMore while it may still end within the limit (maxHeaderBytes, at
// most MaxScanHead), or Slow past it.
func findHead(b []byte, maxHeaderBytes int) (int, Verdict) {
	limit := scanLimit(maxHeaderBytes)
	end := headEnd(b, 0)
	switch {
	case end == 0 && len(b) < limit:
		return 0, NeedMore
	case end == 0 || end > limit:
		return 0, Slow
	}
	return end, Fast
}

// Verdict is ScanRequest's answer.
type Verdict uint8

const (
	NeedMore Verdict = iota // read more bytes and scan again
	Fast                    // serve it from RequestHead
	Slow                    // hand the bytes to ReadRequest
)

func (v Verdict) String() string {
	switch v {
	case NeedMore:
		return "need-more"
	case Fast:
		return "fast"
	}
	return "slow"
}

// MaxScanFields bounds the fields a fast-path head may have, so that
// RequestHead is a fixed-size value that needs no allocation. Browsers
// send about 15.
const MaxScanFields = 48

// MaxScanHead bounds the head a scanner takes: a longer one is Slow,
// whatever maxHeaderBytes allows. Each call scans the head from its start,
// so a caller that scans again after every read of a slowly sent head
// costs the square of its length; this keeps that small, and a Span's
// int32 far from overflowing. Real clients' heads are a few KiB.
const MaxScanHead = 32 << 10

// scanLimit is the head limit a scan applies: maxHeaderBytes (net/http's
// default when not positive), at most MaxScanHead.
func scanLimit(maxHeaderBytes int) int {
	if maxHeaderBytes <= 0 || maxHeaderBytes > MaxScanHead {
		return MaxScanHead
	}
	return maxHeaderBytes
}

// Span is a part of the scanned buffer: b[Start:End].
type Span struct{ Start, End int32 }

// Of returns the bytes of s in b, the buffer that was scanned.
func (s Span) Of(b []byte) []byte { return b[s.Start:s.End] }

// Field is one header line: its name as sent (a token; Key says which
// field the proxy cares about it is) and its value without surrounding
// spaces and tabs.
type Field struct {
	Name, Value Span
	Key         FieldKey
}

// FieldKey names the fields whose presence changes what the proxy does.
type FieldKey uint8

const (
	KeyOther FieldKey = iota
	KeyHost
	KeyConnection
	KeyHop // hop-by-hop fields the proxy drops: Keep-Alive, Proxy-Connection, Proxy-Authorization, Proxy-Authenticate
	KeyXForwardedFor
	KeyXForwardedProto
	KeyXForwardedHost
	KeyXForwardedPort
	KeyForwarded
	keySlow // a field that sends the request to the full path
)

// RequestHead is a Fast request, every part a Span of the scanned buffer.
type RequestHead struct {
	Len    int  // bytes of the head, through its blank line
	Method Span // a token
	Target Span // origin-form: "/" then plain bytes (see fastPathByte)
	Minor  int  // HTTP/1.Minor: 0 or 1
	Close  bool // the client's connection ends after this answer (!KeepAlive)
	Host   int  // the index in Fields of Host, or -1 (HTTP/1.0 without one)
	N      int  // fields in Fields
	Fields [MaxScanFields]Field
}

// Find returns the index in Fields of the field with key k, or -1.
func (h *RequestHead) Find(k FieldKey) int {
	for i := 0; i < h.N; i++ {
		if h.Fields[i].Key == k {
			return i
		}
	}
	return -1
}

// scan checks head, a complete head (through its blank line), and fills
// h. It reports false for anything outside the fast shape.
func (h *RequestHead) scan(head []byte) bool {
	h.Len, h.N, h.Host, h.Close = len(head), 0, -1, false
	line, rest, ok := cutLine(head)
	if !ok || !h.requestLine(line) {
		return false
	}
	var seen [keySlow]uint8
	connClose, connKeepAlive := false, false
	for {
		f, name, value, next, done, ok := nextField(head, rest)
		if !ok || !done && h.N == MaxScanFields {
			return false
		}
		if done {
			break // head ended at its first blank line
		}
		rest = next
		k := fieldKey(name)
		switch k {
		case keySlow:
			return false
		case KeyHost:
			if !validHostBytes(value) {
				return false
			}
			h.Host = h.N
		case KeyConnection:
			switch {
			case asciiEqualFold(value, "close"):
				connClose = true
			case asciiEqualFold(value, "keep-alive"):
				connKeepAlive = true
			default:
				return false
			}
		}
		if k != KeyOther && k != KeyHop {
			if seen[k]++; seen[k] > 1 {
				return false // two Hosts, Connections or forwarding-record fields of a kind
			}
		}
		f.Key = k
		h.Fields[h.N] = f
		h.N++
	}
	if h.Minor == 1 {
		if h.Host < 0 {
			return false // net/http: 400, missing Host
		}
		h.Close = connClose
	} else {
		h.Close = !connKeepAlive
	}
	return true
}

// nextField cuts the next field line off rest, the part of head after
// the lines read so far: its name, value and their Spans in head (Key
// unset), and the rest after it. done says rest began with the blank
// line that ends the head; ok false, a line a strict parser refuses.
func nextField(head, rest []byte) (f Field, name, value, next []byte, done, ok bool) {
	line, next, ok := cutLine(rest)
	if !ok {
		return f, nil, nil, nil, false, false
	}
	if len(line) == 0 {
		return f, nil, nil, next, true, true
	}
	start := int32(len(head) - len(next) - len(line) - 2)
	colon, v0, v1, ok := fieldLine(line)
	if !ok {
		return f, nil, nil, nil, false, false
	}
	f.Name = Span{start, start + int32(colon)}
	f.Value = Span{start + int32(v0), start + int32(v1)}
	return f, line[:colon], line[v0:v1], next, false, true
}

// fieldLine checks a field line, "token:value", with no control byte but
// HTAB in the value, and returns where the name ends and where the value
// lies without the spaces and tabs around it.
func fieldLine(line []byte) (colon, v0, v1 int, ok bool) {
	for colon < len(line) && tokenByte[line[colon]] {
		colon++
	}
	if colon == 0 || colon == len(line) || line[colon] != ':' {
		return 0, 0, 0, false // obs-fold, a non-token or spaced name, no colon
	}
	v0, v1 = colon+1, len(line)
	for i := v0; i < v1; i++ {
		if c := line[i]; c < ' ' && c != '\t' || c == 0x7f {
			return 0, 0, 0, false
		}
	}
	for v0 < v1 && (line[v0] == ' ' || line[v0] == '\t') {
		v0++
	}
	for v1 > v0 && (line[v1-1] == ' ' || line[v1-1] == '\t') {
		v1--
	}
	return colon, v0, v1, true
}

// requestLine checks "METHOD SP /target SP HTTP/1.x" and records it.
func (h *RequestHead) requestLine(line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return false
	}
	for _, c := range line[:sp] {
		if !tokenByte[c] {
			return false
		}
	}
	method := line[:sp]
	if string(method) == "CONNECT" || string(method) == "PRI" {
		return false
	}
	rest := line[sp+1:]
	tsp := bytes.IndexByte(rest, ' ')
	if tsp < 0 || !fastTarget(rest[:tsp]) {
		return false
	}
	switch string(rest[tsp+1:]) {
	case "HTTP/1.1":
		h.Minor = 1
	case "HTTP/1.0":
		h.Minor = 0
	default:
		return false
	}
	h.Method = Span{0, int32(sp)}
	h.Target = Span{int32(sp + 1), int32(sp + 1 + tsp)}
	return true
}

// fastTarget reports an origin-form target the fast path takes: "/" not
// followed by "/", path bytes that url.ParseRequestURI keeps as they are
// or a "%" with two hex digits, then optionally "?" and a query without
// control bytes or spaces.
func fastTarget(t []byte) bool {
	if len(t) == 0 || t[0] != '/' || len(t) > 1 && t[1] == '/' {
		return false
	}
	i := 1
	for ; i < len(t) && t[i] != '?'; i++ {
		c := t[i]
		if c == '%' {
			if i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2]) {
				return false
			}
			i += 2
			continue
		}
		if !pathByte[c] {
			return false
		}
	}
	for ; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// cutLine splits the first CRLF-terminated line off b. A bare LF or a CR
// anywhere but before the LF makes it fail, so the fast path never sees
// a line net/http reads differently.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

// fieldName numbers the field names either direction treats specially.
type fieldName uint8

const (
	nOther fieldName = iota
	nHost
	nConnection
	nKeepAlive
	nProxyConnection
	nProxyAuthenticate
	nProxyAuthorization
	nTE
	nClose
	nExpect
	nPragma
	nUpgrade
	nTrailer
	nForwarded
	nContentLength
	nTransferEncoding
	nXForwardedFor
	nXForwardedProto
	nXForwardedHost
	nXForwardedPort
	nDate
	nContentType
	nContentEncoding
	nNames
)

// names are the special names, lower case, by number.
var names = [nNames]string{"", "host", "connection", "keep-alive", "proxy-connection",
	"proxy-authenticate", "proxy-authorization", "te", "close", "expect", "pragma", "upgrade",
	"trailer", "forwarded", "content-length", "transfer-encoding", "x-forwarded-for",
	"x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "date", "content-type", "content-encoding"}

// byLength indexes names by length, for the one or few compares a name
// costs.
var byLength = func() (t [20][]fieldName) {
	for n := nHost; n < nNames; n++ {
		t[len(names[n])] = append(t[len(names[n])], n)
	}
	return t
}()

// nameOf returns the number of a field name (a token, any case).
func nameOf(name []byte) fieldName {
	if len(name) >= len(byLength) {
		return nOther
	}
	for _, n := range byLength[len(name)] {
		if asciiEqualFold(name, names[n]) {
			return n
		}
	}
	return nOther
}

// requestKey is what a name means in a request head: keySlow for those
// the full path must handle ("Close" because "Connection: close" names it
// hop-by-hop; Pragma because net/http adds Cache-Control for it).
var requestKey = [nNames]FieldKey{
	nHost: KeyHost, nConnection: KeyConnection,
	nKeepAlive: KeyHop, nProxyConnection: KeyHop, nProxyAuthenticate: KeyHop, nProxyAuthorization: KeyHop,
	nTE: keySlow, nClose: keySlow, nExpect: keySlow, nPragma: keySlow, nUpgrade: keySlow,
	nTrailer: keySlow, nContentLength: keySlow, nTransferEncoding: keySlow,
	nForwarded: KeyForwarded, nXForwardedFor: KeyXForwardedFor, nXForwardedProto: KeyXForwardedProto,
	nXForwardedHost: KeyXForwardedHost, nXForwardedPort: KeyXForwardedPort,
}

// fieldKey classifies a request field name. A name with '_' that reads
// as a special one with '-' for '_' is Slow: the full path's header
// policy drops it (CGI-style servers take it for the real one).
func fieldKey(name []byte) FieldKey {
	if k := requestKey[nameOf(name)]; k != KeyOther || bytes.IndexByte(name, '_') < 0 {
		return k
	}
	if underscoreName(name) != nOther {
		return keySlow
	}
	return KeyOther
}

// underscoreName is nameOf with '_' read as '-'.
func underscoreName(name []byte) fieldName {
	if len(name) >= len(byLength) {
		return nOther
	}
	for _, n := range byLength[len(name)] {
		s := names[n]
		i := 0
		for ; i < len(name); i++ {
			c := lower(name[i])
			if c == '_' {
				c = '-'
			}
			if c != s[i] {
				break
			}
		}
		if i == len(name) {
			return n
		}
	}
	return nOther
}

// asciiEqualFold compares b with s, lower case, ignoring ASCII case only
// (as tokenEqual: a non-ASCII byte never matches).
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

func validHostBytes(h []byte) bool {
	for _, c := range h {
		if !hostByte[c] {
			return false
		}
	}
	return true
}

// AppendCanonical appends name (a token) in textproto's canonical form:
// upper case first and after each '-', lower case elsewhere. It is the key
// ReadRequest gives the field.
func AppendCanonical(dst, name []byte) []byte {
	upper := true
	for _, c := range name {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst
}
