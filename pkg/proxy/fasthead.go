package proxy

import (
	"net/http"
	"strconv"

	"github.com/rollbridge/rollbridge-go/internal/h1"
)

// appendAppHead is the header policy (header.go) for the event-loop path
// of issue #17: it appends to dst the head the app is sent for a request
// that h1.ScanRequest called Fast in raw, arriving from the TCP peer whose
// address is peerIP, over plain HTTP. It allocates nothing beyond dst's
// growth. TestFastHeadPolicy and FuzzFastHeadPolicy hold it to writeHead,
// line for line: a Fast request has no body, no Upgrade, no TE and no
// Connection token but "close" or "keep-alive", and at most one of each
// forwarding-record field, so only these parts of appHeaders apply:
//   - end-to-end fields pass with their canonical names, in the order they
//     came (appHeaders' map order differs; only the order within a name
//     means anything, and it is kept);
//   - Connection and the hop-by-hop fields (KeyHop) are dropped;
//   - the forwarding record is built as appHeaders builds it.
func appendAppHead(dst, raw []byte, h *h1.RequestHead, peerIP string) []byte {
	var host []byte
	if h.Host >= 0 {
		host = h.Fields[h.Host].Value.Of(raw)
	}
	dst = append(dst, h.Method.Of(raw)...)
	dst = append(dst, ' ')
	dst = append(dst, h.Target.Of(raw)...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\n"...)
	var record [h1.KeyForwarded + 1][]byte // the client's forwarding-record values, at most one each
	for _, f := range h.Fields[:h.N] {
		switch f.Key {
		case h1.KeyOther:
			dst = h1.AppendCanonical(dst, f.Name.Of(raw))
			dst = append(dst, ": "...)
			dst = append(dst, f.Value.Of(raw)...)
			dst = append(dst, "\r\n"...)
		case h1.KeyXForwardedFor, h1.KeyXForwardedProto, h1.KeyXForwardedHost, h1.KeyXForwardedPort, h1.KeyForwarded:
			// A field sent with an empty value still counts as sent, as
			// for appHeaders (a nil check, not a length one): a slice of
			// raw is never nil.
			record[f.Key] = f.Value.Of(raw)
		}
	}
	dst = append(dst, "X-Forwarded-For: "...)
	if v := record[h1.KeyXForwardedFor]; v != nil {
		dst = append(dst, v...)
		dst = append(dst, ", "...)
	}
	dst = append(dst, peerIP...)
	dst = append(dst, "\r\nX-Forwarded-Proto: "...)
	if v := record[h1.KeyXForwardedProto]; v != nil {
		dst = append(dst, v...)
	} else {
		dst = append(dst, "http"...)
	}
	dst = append(dst, "\r\nX-Forwarded-Host: "...)
	if v := record[h1.KeyXForwardedHost]; v != nil {
		dst = append(dst, v...)
	} else {
		dst = append(dst, host...)
	}
	dst = append(dst, "\r\nX-Forwarded-Port: "...)
	if v := record[h1.KeyXForwardedPort]; v != nil {
		dst = append(dst, v...)
		dst = append(dst, ',')
	}
	if i, j := hostPort(host); i < j {
		dst = append(dst, host[i:j]...)
	} else {
		dst = append(dst, "80"...)
	}
	dst = append(dst, "\r\n"...)
	if v := record[h1.KeyForwarded]; v != nil {
		dst = append(dst, "Forwarded: "...)
		dst = append(dst, v...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// hostPort locates the port in a Host value for X-Forwarded-Port: the
// digits after the first ":" that has some, looking only after the "]" of
// a bracketed IPv6 literal; i == j when there is none. forwardedPort and
// appendAppHead share it, so the two paths cannot drift apart.
func hostPort[S ~string | ~[]byte](host S) (i, j int) {
	from := 0
	for k := len(host) - 1; k >= 0; k-- {
		if host[k] == ']' {
			from = k + 1
			break
		}
	}
	for k := from; k < len(host); k++ { // the first ":" followed by digits, as /:(\d+)/
		if host[k] != ':' {
			continue
		}
		n := k + 1
		for n < len(host) && host[n] >= '0' && host[n] <= '9' {
			n++
		}
		if n > k+1 {
			return k + 1, n
		}
	}
	return 0, 0
}

// clientAnswer is what appendClientHead needs to know beside the app's
// answer: the client's side of the exchange.
type clientAnswer struct {
	minor int    // the client's request was HTTP/1.minor
	close bool   // the client's connection ends after this answer (h1.RequestHead.Close)
	date  []byte // the Date value for an answer that has none (net/http's server adds it)
	// sniffed is the Content-Type for an answer that needs one
	// (needsSniff): http.DetectContentType of the body's first 512 bytes,
	// as net/http's server computes it.
	sniffed string
}

// needsSniff reports an answer to which net/http's server would add a
// sniffed Content-Type: none sent, no Content-Encoding, a body.
func needsSniff(raw []byte, h *h1.ResponseHead) bool {
	return h.ContentType < 0 && h.ContentLength > 0 &&
		(h.ContentEncoding < 0 || h.Fields[h.ContentEncoding].Value.Start == h.Fields[h.ContentEncoding].Value.End)
}

// appendClientHead is forward's answer (forward.go) for the event-loop
// path: it appends to dst the head the client gets for a Fast answer in
// raw, the one net/http's server writes after forward copies the answer's
// fields: net/http's status line for the client's version, the app's
// end-to-end fields with canonical names, not Connection or the
// hop-by-hop ones (removeHopByHop), and what net/http's server adds
// itself (Date, a sniffed Content-Type, "Connection: close" when the
// client's connection ends, "keep-alive" for an HTTP/1.0 client that asked
// for it). TestFastAnswerPolicy holds it to the real net/http path.
func appendClientHead(dst, raw []byte, h *h1.ResponseHead, c clientAnswer) []byte {
	dst = appendStatusLine(dst, c.minor, h.Status)
	for _, f := range h.Fields[:h.N] {
		if f.Key == h1.KeyConnection || f.Key == h1.KeyHop {
			continue
		}
		dst = h1.AppendCanonical(dst, f.Name.Of(raw))
		dst = append(dst, ": "...)
		dst = append(dst, f.Value.Of(raw)...)
		dst = append(dst, "\r\n"...)
	}
	if h.Date < 0 {
		dst = append(dst, "Date: "...)
		dst = append(dst, c.date...)
		dst = append(dst, "\r\n"...)
	}
	if needsSniff(raw, h) {
		dst = append(dst, "Content-Type: "...)
		dst = append(dst, c.sniffed...)
		dst = append(dst, "\r\n"...)
	}
	switch {
	case c.minor == 0 && !c.close:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	case c.minor == 1 && c.close:
		dst = append(dst, "Connection: close\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// appendStatusLine is net/http's writeStatusLine.
func appendStatusLine(dst []byte, minor, code int) []byte {
	if minor == 0 {
		dst = append(dst, "HTTP/1.0 "...)
	} else {
		dst = append(dst, "HTTP/1.1 "...)
	}
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	if text := http.StatusText(code); text != "" {
		dst = append(dst, text...)
	} else {
		dst = append(dst, "status code "...)
		dst = strconv.AppendInt(dst, int64(code), 10)
	}
	return append(dst, "\r\n"...)
}
