package proxy

import (
	"bufio"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// This file is the one header policy: what the app is sent for a client's
// request, whichever of the three paths forwards it (forward.go for
// body-less requests, ReverseProxy for requests with a body, upgrade.go for
// protocol switches). appTarget, appHeaders and the Host rule decide; the
// paths only encode the decision, either as wire bytes (writeHead) or as an
// http.Header for net/http to write (setAppHeader). One policy, so the app
// cannot tell which path a request took (TestSamePolicyOnEveryPath).
//
// The app gets:
//   - the request target exactly as the client sent it (query included,
//     nothing re-escaped, as nginx does), in origin-form ("/p" for an
//     absolute-form "http://host/p");
//   - the client's Host;
//   - every end-to-end header of the client unchanged, in its order within
//     a name; not the hop-by-hop ones (isHop, and every header the
//     Connection header names), not Content-Length, which each path
//     writes for the body it actually sends, and not an underscore
//     spelling of any of these or of the forwarding record
//     (underscoreAlias);
//   - "Te: trailers" when the client's TE lists trailers (end-to-end in
//     practice: gRPC needs it);
//   - for a protocol switch, "Connection: Upgrade" and the client's Upgrade;
//   - the forwarding record, built from what arrived (see appHeaders).
//     A Connection token cannot remove it: the front end's record is not
//     this hop's to drop on a client's say-so.

// appTarget is the request target the app is sent: the client's, as it
// came. An absolute-form target ("http://host/p?q", as sent to a forward
// proxy) keeps its path and query as they came, without scheme and
// authority; "*" (OPTIONS) stays "*".
func appTarget(r *http.Request) string {
	t := r.RequestURI
	if strings.HasPrefix(t, "/") {
		return t
	}
	if _, rest, ok := strings.Cut(t, "://"); ok {
		switch i := strings.IndexAny(rest, "/?"); {
		case i < 0:
			return "/"
		case rest[i] == '?':
			return "/" + rest[i:]
		default:
			return rest[i:]
		}
	}
	return r.URL.RequestURI()
}

// setAppTarget makes a request written by net/http (Request.Write, the
// Transport) carry appTarget: it writes URL.Opaque verbatim, where
// URL.Path would come out re-escaped ("/a{b}" as "/a%7Bb%7D").
func setAppTarget(u *url.URL, in *http.Request) {
	t := appTarget(in)
	if strings.HasPrefix(t, "//") {
		// An Opaque starting with "//" is written as "http://…". Path and
		// RawPath already hold these bytes; only a target that needs
		// escaping (rare, and never from a browser) comes out escaped.
		u.RawQuery = in.URL.RawQuery
		return
	}
	u.Opaque, u.RawQuery, u.ForceQuery = t, "", false
}

// appHeaders calls add for every header line the app is sent for r, except
// Host (the client's, r.Host) and Content-Length (the path's own). upgrade
// is the protocol a switch asks for, "" for a plain request.
//
// The forwarding record:
//   - X-Forwarded-For: the client's entries with this hop's peer address
//     appended, as one line (nginx's $proxy_add_x_forwarded_for). The peer
//     is appended whether or not it is a trusted proxy: the list records
//     hops, and Proxy.ClientAddr decides which entry to believe.
//   - X-Forwarded-Proto and X-Forwarded-Host: the front end's, when it sent
//     them; rollbridged normally sits behind one that terminates TLS, and
//     replacing its "https" with this hop's "http" would send apps into
//     redirect loops. Without them: this hop's scheme and Host.
//   - X-Forwarded-Port: as the Node original's proxy (http-proxy with
//     xfwd) sets it, so apps migrated from it read the same value: the
//     port of the request's Host, else 443 over TLS and 80 without, added
//     after the front end's value with a bare "," when it sent one. It is
//     the port the client asked for, not the one rollbridged listens on
//     (see forwardedPort).
//   - Forwarded: passed on unchanged.
//
// Anyone who can reach the proxy port directly can set these headers, as
// with any proxy that trusts its front end. Options.TrustedProxies says
// whom rollbridged itself believes, for ClientAddr; it changes nothing
// that is sent.
//
// It runs on the request path, so it allocates nothing itself but the
// joined X-Forwarded-For line.
func appHeaders(r *http.Request, upgrade string, add func(k, v string)) {
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if !endToEnd(k, conn) {
			continue
		}
		for _, v := range vv {
			add(k, v)
		}
	}
	if hasToken(r.Header["Te"], "trailers") {
		add("Te", "trailers")
	}
	if upgrade != "" {
		add("Connection", "Upgrade")
		add("Upgrade", upgrade)
	}

	prior := r.Header["X-Forwarded-For"]
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		switch len(prior) {
		case 0:
			add("X-Forwarded-For", ip)
		case 1:
			add("X-Forwarded-For", prior[0]+", "+ip)
		default:
			add("X-Forwarded-For", strings.Join(prior, ", ")+", "+ip)
		}
	} else {
		for _, v := range prior { // no address to add (not a TCP peer)
			add("X-Forwarded-For", v)
		}
	}
	if v := r.Header["X-Forwarded-Proto"]; v != nil {
		for _, x := range v {
			add("X-Forwarded-Proto", x)
		}
	} else if r.TLS != nil {
		add("X-Forwarded-Proto", "https")
	} else {
		add("X-Forwarded-Proto", "http")
	}
	if v := r.Header["X-Forwarded-Host"]; v != nil {
		for _, x := range v {
			add("X-Forwarded-Host", x)
		}
	} else {
		add("X-Forwarded-Host", r.Host)
	}
	port := forwardedPort(r)
	switch prior := r.Header["X-Forwarded-Port"]; len(prior) {
	case 0:
		add("X-Forwarded-Port", port)
	case 1:
		add("X-Forwarded-Port", prior[0]+","+port)
	default:
		// Node joins repeated lines of a header with ", " before http-proxy
		// appends its own value with ",".
		add("X-Forwarded-Port", strings.Join(prior, ", ")+","+port)
	}
	for _, v := range r.Header["Forwarded"] {
		add("Forwarded", v)
	}
}

// forwardedPort is this hop's X-Forwarded-Port value for r: the port in
// the Host header, else the scheme's default (443 over TLS, 80 without).
// Like the original, it takes the digits after the first ":" that has
// some; unlike it, it looks only after the "]" of a bracketed IPv6
// literal, where the original would take "1" out of "[::1]:8080".
func forwardedPort(r *http.Request) string {
	if i, j := hostPort(r.Host); i < j {
		return r.Host[i:j]
	}
	if r.TLS != nil {
		return "443"
	}
	return "80"
}

// endToEnd reports whether the client's header k (canonical) is passed to
// the app as it came. conn is the client's Connection header.
func endToEnd(k string, conn []string) bool {
	switch k {
	case "Host", "Content-Length":
		return false // written by each path: r.Host, the body it sends
	case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Forwarded-Port":
		return false // the forwarding record, added after the loop
	}
	return !isHop(k) && !namedIn(conn, k) && !underscoreAlias(k)
}

// underscoreAlias reports a name with '_' that, read with '-' for '_',
// is one of the names the policy sets or drops ("X_Forwarded_For"):
// CGI-style servers (Rack, PHP, WSGI) see both spellings as one header,
// so passing it would let a client forge the forwarding record around
// this hop. nginx drops every name with '_' by default; only these go.
func underscoreAlias(k string) bool {
	if !strings.Contains(k, "_") {
		return false // almost every name: no allocation
	}
	switch d := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-")); d {
	case "Host", "Content-Length", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Forwarded-Port":
		return true
	default:
		return isHop(d)
	}
}

// writeHead writes the request head the app is sent for r, with
// Content-Length only when the client sent one: the encoding for paths
// that send no body (forward.go, and upgrade.go, which sends the handshake
// and leaves any bytes after it to the copy).
func writeHead(bw *bufio.Writer, r *http.Request, upgrade string) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(appTarget(r))
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	if upgrade == "" {
		for _, v := range r.Header["Content-Length"] { // body-less: "0", if sent at all
			writeHeaderLine(bw, "Content-Length", v)
		}
	}
	appHeaders(r, upgrade, func(k, v string) { writeHeaderLine(bw, k, v) })
	_, err := bw.WriteString("\r\n")
	return err
}

// setAppHeader replaces what h holds with the header the app is sent for r,
// for a request that net/http writes (ReverseProxy). h keeps its map, so
// ReverseProxy's clone of the client's header is reused, not thrown away;
// it shares no slice with r.Header.
func setAppHeader(h http.Header, r *http.Request, upgrade string) {
	clear(h)
	appHeaders(r, upgrade, func(k, v string) { h[k] = append(h[k], v) })
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

// removeHopByHop deletes the hop-by-hop headers from a response's h, and
// those its Connection header names: the same rule as for requests, applied
// to what the app answers (ReverseProxy applies the same rule itself).
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

// isHop reports a hop-by-hop header (canonical form): RFC 9110 §7.6.1's
// list plus the older ones net/http/httputil also removes.
func isHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// namedIn reports whether the Connection header values list k.
func namedIn(conn []string, k string) bool { return hasToken(conn, k) }

// hasToken reports whether the comma-separated header values list tok,
// ignoring case and spaces.
func hasToken(values []string, tok string) bool {
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(name), tok) {
				return true
			}
		}
	}
	return false
}

// isUpgrade reports a request asking to switch protocols (WebSocket): an
// Upgrade header and "upgrade" among the Connection tokens, the same test
// ReverseProxy applies before it hijacks.
func isUpgrade(h http.Header) bool {
	if len(h["Upgrade"]) == 0 { // almost every request stops here, without allocating
		return false
	}
	return hasToken(h["Connection"], "upgrade")
}

// upgradeType is the protocol a switch asks for (or was answered with).
func upgradeType(h http.Header) string { return h.Get("Upgrade") }
