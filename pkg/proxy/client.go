package proxy

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddr returns the address of the client that made r, for decisions
// about the client (a maintenance bypass, canary hashing, an access log):
//   - the peer's own address when the peer is not in
//     Options.TrustedProxies, whatever X-Forwarded-For says, since anyone
//     can write that header;
//   - otherwise the rightmost X-Forwarded-For entry that is not a trusted
//     proxy, reading the list from this hop back towards the client. An
//     entry that is not an IP address ("unknown", an obfuscated name) ends
//     the walk, and so does the left end of the list: the client is then
//     the last address reached, the trusted hop that vouched for it.
//
// X-Forwarded-For lines are read as one list; an entry may carry a port
// ("192.0.2.7:4711", "[2001:db8::1]:80"), which is dropped. IPv4-mapped
// IPv6 addresses are returned as IPv4 and zones are dropped, so one client
// has one form. The result is invalid (IsValid false) only when r's
// RemoteAddr holds no IP address, as for a request not read from a TCP
// connection.
//
// It reads only r's RemoteAddr and header, and is safe for concurrent use.
// It is a function rather than a value stored on each request so that
// requests whose client nobody asks about pay nothing for it.
func (p *Proxy) ClientAddr(r *http.Request) netip.Addr {
	return clientAddr(*p.trusted.Load(), r.RemoteAddr, r.Header["X-Forwarded-For"])
}

// clientAddr is ClientAddr over its inputs: the trusted prefixes (masked),
// the peer's "ip:port" and the X-Forwarded-For lines.
func clientAddr(trusted []netip.Prefix, remoteAddr string, xff []string) netip.Addr {
	peer, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := normalAddr(peer.Addr())
	if !isTrusted(trusted, addr) {
		return addr
	}
	for i := len(xff) - 1; i >= 0; i-- {
		list := xff[i]
		for list != "" {
			entry := list
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				entry, list = list[j+1:], list[:j]
			} else {
				list = ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue // "a,,b": nothing claimed, nothing to believe
			}
			next, ok := parseForwardedAddr(entry)
			if !ok {
				return addr
			}
			addr = next
			if !isTrusted(trusted, addr) {
				return addr
			}
		}
	}
	return addr
}

// parseForwardedAddr reads one X-Forwarded-For entry: an IP address, or an
// IP address with a port.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return normalAddr(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalAddr(ap.Addr()), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return normalAddr(a), true
		}
	}
	return netip.Addr{}, false
}

// normalAddr gives one address one form: a zone would keep a link-local
// peer out of every prefix (netip.Prefix.Contains), and an IPv4-mapped
// IPv6 peer out of IPv4 prefixes.
func normalAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

func isTrusted(trusted []netip.Prefix, a netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
