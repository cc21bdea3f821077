package h1

// ScanResponse is ScanRequest for the app's answer to a GET: Fast when the
// head in b is complete and ReadResponse would read the same answer from
// it (status, fields, a body of exactly ContentLength bytes, and the same
// Close), FuzzScanResponseDifferential checks it. It takes only the plain
// shape: "HTTP/1.1", a status from 200 to 599 but 204 and 304, one
// Content-Length, no Transfer-Encoding, Trailer, Upgrade or Pragma, a
// Connection field of one "close" or "keep-alive" token and no field
// named Close, at most MaxScanFields fields, and none of what a strict
// parser refuses. Everything else is Slow: the answer goes through
// ReadResponse and the full path.
//
// An answer to HEAD has no body whatever its Content-Length says; a loop
// that sends HEAD must not frame the answer with this.
func ScanResponse(b []byte, maxHeaderBytes int, h *ResponseHead) Verdict {
	end, v := findHead(b, maxHeaderBytes)
	if v == Fast && !h.scan(b[:end]) {
		return Slow
	}
	return v
}

// ResponseHead is a Fast answer, its parts Spans of the scanned buffer.
type ResponseHead struct {
	Len           int   // bytes of the head, through its blank line
	Status        int   // 200 to 599, not 204 or 304
	ContentLength int64 // the body's length, from its one Content-Length field
	Close         bool  // the app closes the connection after the body
	Date          int   // the index in Fields of Date, or -1
	ContentType   int   // the index in Fields of Content-Type, or -1
	// ContentEncoding is the index in Fields of the first Content-Encoding,
	// or -1 (net/http's server sniffs a type only without one).
	ContentEncoding int
	N               int // fields in Fields
	Fields          [MaxScanFields]Field
}

// Keys of answer fields, beside KeyOther, KeyConnection and KeyHop.
const (
	KeyContentLength FieldKey = keySlow + 1 + iota
	KeyDate
	KeyContentType
	KeyContentEncoding
)

// responseKey is what a name means in an answer's head. The request's
// forwarding-record and Host names mean nothing special here. TE is
// hop-by-hop (removeHopByHop drops it); Upgrade outside a 101 and Trailer
// go to the full path.
var responseKey = [nNames]FieldKey{
	nConnection: KeyConnection,
	nKeepAlive:  KeyHop, nProxyConnection: KeyHop, nProxyAuthenticate: KeyHop, nProxyAuthorization: KeyHop, nTE: KeyHop,
	nClose: keySlow, nPragma: keySlow, nUpgrade: keySlow, nTrailer: keySlow, nTransferEncoding: keySlow,
	nContentLength: KeyContentLength, nDate: KeyDate, nContentType: KeyContentType,
	nContentEncoding: KeyContentEncoding,
}

func (h *ResponseHead) scan(head []byte) bool {
	h.Len, h.N, h.Date, h.ContentType, h.ContentEncoding = len(head), 0, -1, -1, -1
	h.Close, h.ContentLength = false, -1
	line, rest, ok := cutLine(head)
	// "HTTP/1.1 ddd" and an optional " reason" (not passed on: net/http
	// writes its own).
	if !ok || len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || len(line) > 12 && line[12] != ' ' {
		return false
	}
	d0, d1, d2 := line[9]-'0', line[10]-'0', line[11]-'0'
	if d0 > 9 || d1 > 9 || d2 > 9 {
		return false
	}
	h.Status = int(d0)*100 + int(d1)*10 + int(d2)
	if h.Status < 200 || h.Status > 599 || h.Status == 204 || h.Status == 304 {
		return false
	}
	connections := 0
	for {
		f, name, value, next, done, ok := nextField(head, rest)
		if !ok || !done && h.N == MaxScanFields {
			return false
		}
		if done {
			break
		}
		rest = next
		k := responseKey[nameOf(name)]
		switch k {
		case keySlow:
			return false
		case KeyConnection:
			switch connections++; {
			case connections > 1:
				return false
			case asciiEqualFold(value, "close"):
				h.Close = true
			case !asciiEqualFold(value, "keep-alive"):
				return false
			}
		case KeyContentLength:
			if h.ContentLength >= 0 || len(value) == 0 || len(value) > 18 {
				return false // a second one, or empty, or more than int64 holds
			}
			n := int64(0)
			for _, c := range value {
				if c < '0' || c > '9' {
					return false
				}
				n = n*10 + int64(c-'0')
			}
			h.ContentLength = n
		case KeyDate:
			if h.Date >= 0 {
				return false
			}
			h.Date = h.N
		case KeyContentType:
			if h.ContentType >= 0 {
				return false
			}
			h.ContentType = h.N
		case KeyContentEncoding:
			if h.ContentEncoding < 0 {
				h.ContentEncoding = h.N
			}
		}
		f.Key = k
		h.Fields[h.N] = f
		h.N++
	}
	return h.ContentLength >= 0
}
