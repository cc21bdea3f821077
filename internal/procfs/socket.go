package procfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// TCPListener is one listening TCP socket of the caller's network
// namespace, from /proc/net/tcp or /proc/net/tcp6.
type TCPListener struct {
	Addr  netip.AddrPort // the bound address; an IPv4-mapped IPv6 address stays as the kernel shows it
	UID   int            // the socket's owner: the user that created it
	Inode uint64         // the socket's inode: /proc/PID/fd/N links to socket:[Inode]
}

// tcpListen is the state column of a listening socket (TCP_LISTEN).
var tcpListen = []byte("0A")

// TCPListeners returns the listening TCP sockets bound to port, IPv4 and
// IPv6. A kernel without IPv6 has no tcp6 table, which is not an error.
//
// The tables list every TCP socket of the namespace, so the cost grows with
// the host's connections: it is meant for the moment before traffic
// switches, not for a periodic path. Lines are read one at a time and only
// the listening ones on port are parsed.
func TCPListeners(port uint16) ([]TCPListener, error) {
	var out []TCPListener
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		ls, err := tcpListeners(name, port)
		if err != nil {
			if name == "/proc/net/tcp6" && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		out = append(out, ls...)
	}
	return out, nil
}

func tcpListeners(path string, port uint16) ([]TCPListener, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() // read-only: nothing to flush
	return parseTCP(f, path, port)
}

// parseTCP reads a /proc/net/tcp{,6} table and returns its listeners on
// port. The columns are "sl local_address rem_address st tx:rx tr:when
// retrnsmt uid timeout inode ..."; an address is hex words in the host's
// byte order, then ":" and the port in hex.
func parseTCP(r io.Reader, path string, port uint16) ([]TCPListener, error) {
	sc := bufio.NewScanner(r)
	want := []byte(fmt.Sprintf(":%04X", port))
	var out []TCPListener
	for first := true; sc.Scan(); first = false {
		if first {
			continue // the header
		}
		l, ok, err := parseTCPLine(sc.Bytes(), want)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if ok {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

func parseTCPLine(line, wantPort []byte) (TCPListener, bool, error) {
	f := bytes.Fields(line)
	if len(f) < 10 {
		return TCPListener{}, false, nil // not a socket line
	}
	local, st := f[1], f[3]
	if !bytes.Equal(st, tcpListen) || !bytes.HasSuffix(local, wantPort) {
		return TCPListener{}, false, nil
	}
	addr, err := parseHexAddr(local)
	if err != nil {
		return TCPListener{}, false, err
	}
	uid, err := strconv.Atoi(string(f[7]))
	if err != nil {
		return TCPListener{}, false, fmt.Errorf("uid %q: %w", f[7], err)
	}
	inode, err := strconv.ParseUint(string(f[9]), 10, 64)
	if err != nil {
		return TCPListener{}, false, fmt.Errorf("inode %q: %w", f[9], err)
	}
	return TCPListener{Addr: addr, UID: uid, Inode: inode}, true, nil
}

// parseHexAddr parses "0100007F:1F90" (IPv4) or 32 hex digits and a port
// (IPv6). Each 32-bit word is printed as a number in the host's byte order.
func parseHexAddr(s []byte) (netip.AddrPort, error) {
	i := bytes.IndexByte(s, ':')
	if i < 0 || (i != 8 && i != 32) {
		return netip.AddrPort{}, fmt.Errorf("address %q: malformed", s)
	}
	port, err := strconv.ParseUint(string(s[i+1:]), 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: port: %w", s, err)
	}
	raw := make([]byte, i/2)
	if _, err := hex.Decode(raw, s[:i]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	// hex.Decode read each word big-endian; the kernel printed it as a
	// number in native order, so turn each word back into memory order.
	var ip [16]byte
	for w := 0; w < len(raw)/4; w++ {
		binary.NativeEndian.PutUint32(ip[w*4:], binary.BigEndian.Uint32(raw[w*4:]))
	}
	var a netip.Addr
	if len(raw) == 4 {
		a = netip.AddrFrom4([4]byte(ip[:4]))
	} else {
		a = netip.AddrFrom16(ip)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// SocketInodes reports which of the socket inodes in want pid holds open,
// from the links in /proc/PID/fd. It stops reading as soon as all are
// found. Reading another user's descriptors needs the rights to ptrace the
// process (root, or the same user); otherwise the error wraps
// fs.ErrPermission. A process that is gone has an error wrapping
// fs.ErrNotExist.
func SocketInodes(pid int, want map[uint64]bool) (map[uint64]bool, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	names, err := listDir(dir)
	if err != nil {
		return nil, err
	}
	found := map[uint64]bool{}
	var buf [64]byte
	for _, n := range names {
		inode, ok := socketLink(dir+n, buf[:])
		if ok && want[inode] {
			found[inode] = true
			if len(found) == len(want) {
				break
			}
		}
	}
	return found, nil
}

// socketLink reads a /proc/PID/fd entry and returns the inode when it is
// a socket ("socket:[12345]"). A descriptor closed meanwhile is no socket.
func socketLink(path string, buf []byte) (uint64, bool) {
	n, err := unix.Readlink(path, buf)
	if err != nil || n <= 0 || n >= len(buf) {
		return 0, false
	}
	s, ok := bytes.CutPrefix(buf[:n], []byte("socket:["))
	if !ok || len(s) < 2 || s[len(s)-1] != ']' {
		return 0, false
	}
	inode, err := strconv.ParseUint(string(s[:len(s)-1]), 10, 64)
	return inode, err == nil
}

// SocketHolders finds the processes of the host that hold socket inode.
// uid, the socket's owner, is a hint: that user's processes are read first,
// and the others only when none of them holds it (a process may have
// changed its user since it created the socket, or received the socket
// from another). Processes whose descriptors the caller may not read are
// skipped, so without root a socket of another user's process is usually
// not found: the result is then empty.
//
// Like AllPids, which it uses, it reads the whole host: only for the moment
// a foreign listener has been found and has to be named.
func SocketHolders(inode uint64, uid int) ([]int, error) {
	pids, err := AllPids()
	if err != nil {
		return nil, err
	}
	want := map[uint64]bool{inode: true}
	var rest []int
	var out []int
	for _, pid := range pids {
		var st unix.Stat_t
		if err := unix.Stat("/proc/"+strconv.Itoa(pid), &st); err != nil {
			continue // gone
		}
		if int(st.Uid) != uid {
			rest = append(rest, pid)
			continue
		}
		if found, _ := SocketInodes(pid, want); found[inode] { // unreadable or gone: not found here
			out = append(out, pid)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	for _, pid := range rest {
		if found, _ := SocketInodes(pid, want); found[inode] { // as above
			out = append(out, pid)
		}
	}
	return out, nil
}

// UID returns the real user id pid runs as (the first Uid: field of
// /proc/PID/status).
func UID(pid int) (int, error) {
	b, err := readFile("/proc/"+strconv.Itoa(pid)+"/status", make([]byte, 2048))
	if err != nil {
		return 0, err
	}
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		if rest, ok := bytes.CutPrefix(line, []byte("Uid:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.Atoi(string(f[0]))
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no Uid line", pid)
}
