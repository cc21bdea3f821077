package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestClientAddr(t *testing.T) {
	local := []string{"127.0.0.0/8", "10.0.0.0/8", "::1/128"}
	for _, tc := range []struct {
		name    string
		trusted []string
		remote  string
		xff     []string
		want    string // "" for an invalid address
	}{
		{"no proxy trusted: the peer, whatever it claims", nil, "192.0.2.1:1234", []string{"203.0.113.9"}, "192.0.2.1"},
		{"untrusted peer", local, "192.0.2.1:1234", []string{"203.0.113.9"}, "192.0.2.1"},
		{"trusted peer without X-Forwarded-For", local, "127.0.0.1:1234", nil, "127.0.0.1"},
		{"trusted peer", local, "127.0.0.1:1234", []string{"203.0.113.9"}, "203.0.113.9"},
		{"rightmost untrusted entry, not the client's own claim", local, "127.0.0.1:1234", []string{"198.51.100.7, 203.0.113.9, 10.0.0.2"}, "203.0.113.9"},
		{"several lines read as one list", local, "127.0.0.1:1234", []string{"198.51.100.7", "203.0.113.9, 10.0.0.2"}, "203.0.113.9"},
		{"every hop trusted: the leftmost", local, "127.0.0.1:1234", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"an entry that is no address ends the walk", local, "127.0.0.1:1234", []string{"198.51.100.7, unknown, 10.0.0.2"}, "10.0.0.2"},
		{"no address right away: the peer", local, "127.0.0.1:1234", []string{"_hidden"}, "127.0.0.1"},
		{"empty entries are skipped", local, "127.0.0.1:1234", []string{"203.0.113.9, , 10.0.0.2,"}, "203.0.113.9"},
		{"entry with a port", local, "127.0.0.1:1234", []string{"203.0.113.9:4711"}, "203.0.113.9"},
		{"IPv6 entry with a port", local, "127.0.0.1:1234", []string{"[2001:db8::1]:80"}, "2001:db8::1"},
		{"IPv6 entry in brackets", local, "127.0.0.1:1234", []string{"[2001:db8::2]"}, "2001:db8::2"},
		{"IPv6 peer", local, "[::1]:5000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"IPv4-mapped peer matches an IPv4 prefix", local, "[::ffff:10.0.0.2]:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"IPv4-mapped prefix matches an IPv4 peer", []string{"::ffff:10.0.0.0/104"}, "10.0.0.2:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"IPv4-mapped entry comes back as IPv4", local, "127.0.0.1:1234", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"zoned peer matches its prefix", []string{"fe80::/10"}, "[fe80::1%eth0]:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"zone dropped", nil, "[fe80::1%eth0]:80", nil, "fe80::1"},
		{"unmasked prefix", []string{"10.1.2.3/8"}, "10.9.9.9:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"peer without an IP address", local, "@", []string{"203.0.113.9"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Options{TrustedProxies: prefixes(t, tc.trusted...)})
			defer p.Close()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != nil {
				r.Header["X-Forwarded-For"] = tc.xff
			}
			got := p.ClientAddr(r)
			if (tc.want == "" && got.IsValid()) || (tc.want != "" && got != netip.MustParseAddr(tc.want)) {
				t.Errorf("ClientAddr(RemoteAddr %q, X-Forwarded-For %q) = %v, want %q", tc.remote, tc.xff, got, tc.want)
			}
		})
	}
}

func TestTrustedProxiesCopied(t *testing.T) {
	trusted := prefixes(t, "127.0.0.0/8")
	p := New(Options{TrustedProxies: trusted})
	defer p.Close()
	trusted[0] = netip.MustParsePrefix("192.0.2.0/24")
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "127.0.0.1:1234"
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	if got := p.ClientAddr(r); got != netip.MustParseAddr("203.0.113.9") {
		t.Errorf("after the caller changed its slice: ClientAddr = %v, want 203.0.113.9", got)
	}
}

// TestClientAddrThroughTheProxy: the way a later user (a maintenance
// bypass, an access log) asks, in front of ServeHTTP over real sockets.
// Trust decides only whom ClientAddr believes; the app gets the same
// X-Forwarded-For either way.
func TestClientAddrThroughTheProxy(t *testing.T) {
	fromApp := make(chan string, 1)
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		fromApp <- strings.Join(r.Header["X-Forwarded-For"], " | ")
	})
	for _, tc := range []struct {
		name    string
		trusted []string
		want    string
	}{
		{"front end trusted", []string{"127.0.0.0/8"}, "203.0.113.9"},
		{"nobody trusted", nil, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Options{TrustedProxies: prefixes(t, tc.trusted...)})
			activate(p, "v1", addr)
			client := make(chan netip.Addr, 1)
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				client <- p.ClientAddr(r)
				p.ServeHTTP(w, r)
			}))
			t.Cleanup(func() { front.Close(); p.Close() })

			req, err := http.NewRequest(http.MethodGet, front.URL+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Forwarded-For", "198.51.100.7, 203.0.113.9")
			resp, err := newClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body) // empty
			_ = resp.Body.Close()
			if got := <-client; got != netip.MustParseAddr(tc.want) {
				t.Errorf("ClientAddr = %v, want %s", got, tc.want)
			}
			if got, want := <-fromApp, "198.51.100.7, 203.0.113.9, 127.0.0.1"; got != want {
				t.Errorf("app saw X-Forwarded-For %q, want %q", got, want)
			}
		})
	}
}

// FuzzClientAddr: any peer address and X-Forwarded-For give an answer,
// never a panic, and an untrusted peer is always the answer.
func FuzzClientAddr(f *testing.F) {
	f.Add("127.0.0.1:1", "203.0.113.9, 10.0.0.2")
	f.Add("[::ffff:10.0.0.1]:1", "[2001:db8::1]:80,,unknown")
	f.Add("192.0.2.1:80", "10.0.0.1")
	trusted := trustedPrefixes(prefixes(f, "127.0.0.0/8", "10.0.0.0/8", "::1/128"))
	f.Fuzz(func(t *testing.T, remote, xff string) {
		got := clientAddr(trusted, remote, []string{xff})
		peer, err := netip.ParseAddrPort(remote)
		if err != nil {
			if got.IsValid() {
				t.Errorf("clientAddr(%q, %q) = %v for a peer without an address", remote, xff, got)
			}
			return
		}
		if a := normalAddr(peer.Addr()); !isTrusted(trusted, a) && got != a {
			t.Errorf("clientAddr(%q, %q) = %v, want the untrusted peer %v", remote, xff, got, a)
		}
		if !got.IsValid() {
			t.Errorf("clientAddr(%q, %q) is invalid for a peer with an address", remote, xff)
		}
	})
}

// TestSetTrustedProxies checks that a reload's new list applies to the next
// request, and that the caller's slice is copied.
func TestSetTrustedProxies(t *testing.T) {
	p := New(Options{})
	t.Cleanup(p.Close)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.1.2.3:5555"
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	if got := p.ClientAddr(r).String(); got != "10.1.2.3" {
		t.Fatalf("nobody trusted: got %s, want the peer", got)
	}
	list := prefixes(t, "10.0.0.0/8")
	p.SetTrustedProxies(list)
	list[0] = netip.MustParsePrefix("192.0.2.0/24") // must not reach the proxy
	if got := p.ClientAddr(r).String(); got != "203.0.113.9" {
		t.Errorf("after SetTrustedProxies: got %s, want the forwarded client", got)
	}
	p.SetTrustedProxies(nil)
	if got := p.ClientAddr(r).String(); got != "10.1.2.3" {
		t.Errorf("after clearing the list: got %s, want the peer", got)
	}
}
