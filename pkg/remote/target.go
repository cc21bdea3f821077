package remote

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Target is a remote host as --host names it: ssh://[user@]host[:port].
type Target struct {
	User string // "" lets ssh choose (its config, else the local user)
	Host string // a host name, an IPv4 address or an IPv6 address (without brackets)
	Port int    // 0 lets ssh choose (its config, else 22)
}

// String is the target as a URL: ssh://user@host:port.
func (t Target) String() string {
	host := t.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if t.Port != 0 {
		host += ":" + strconv.Itoa(t.Port)
	}
	if t.User != "" {
		host = t.User + "@" + host
	}
	return "ssh://" + host
}

// Parse reads ssh://[user@]host[:port] strictly: anything that ssh could
// read as an option (a leading '-'), a password, a path, a query or a
// character outside the user and host name sets is refused, so a --host
// value can only ever name a host.
func Parse(raw string) (Target, error) {
	bad := func(format string, args ...any) (Target, error) {
		return Target{}, fmt.Errorf("--host %q: %s; write it as ssh://user@host or ssh://user@host:port", raw, fmt.Sprintf(format, args...))
	}
	if !strings.HasPrefix(raw, "ssh://") {
		return bad("only ssh:// is supported")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad("%v", err)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || strings.ContainsAny(raw, "?#") {
		return bad("it must name a host only, without a path, query or fragment")
	}
	var t Target
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return bad("a password does not belong in the URL (ssh asks for it, or use a key)")
		}
		t.User = u.User.Username()
		if !validUser(t.User) {
			return bad("user %q must be letters, digits, '_', '.' or '-', not starting with '-', at most 32 characters", t.User)
		}
	}
	t.Host = u.Hostname()
	if !validHost(t.Host) {
		return bad("host %q must be a host name (letters, digits, '-', '.'; not starting with '-') or an IP address", t.Host)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || p[0] == '0' {
			return bad("port %q must be a number from 1 to 65535", p)
		}
		t.Port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("the port after ':' is missing")
	}
	return t, nil
}

func validUser(s string) bool {
	if s == "" || len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

func validHost(s string) bool {
	if s == "" || len(s) > 253 || s[0] == '-' {
		return false
	}
	if ip := net.ParseIP(s); ip != nil {
		return true
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
