package procfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestParseHexAddr(t *testing.T) {
	// The tables print each 32-bit word as a number in the host's byte
	// order, so what the kernel writes for 127.0.0.1 depends on the host;
	// build the expected text the way the kernel does.
	lo := netip.MustParseAddr("127.0.0.1")
	v6 := netip.MustParseAddr("2001:db8::ff00:42:8329")
	for _, c := range []struct {
		name string
		addr netip.Addr
		port uint16
	}{{"ipv4", lo, 8080}, {"ipv6", v6, 443}, {"mapped", netip.AddrFrom16(lo.As16()), 1}, {"any6", netip.IPv6Unspecified(), 65535}} {
		t.Run(c.name, func(t *testing.T) {
			text := kernelHex(c.addr, c.port)
			got, err := parseHexAddr([]byte(text))
			if err != nil || got != netip.AddrPortFrom(c.addr, c.port) {
				t.Errorf("parseHexAddr(%q) = %v, %v; want %v", text, got, err, netip.AddrPortFrom(c.addr, c.port))
			}
		})
	}
	for _, bad := range []string{"", "0100007F", "0100007F:", "0100007F:XYZ", "01007F:0050", "0100007G:0050", "0100007F:10000"} {
		if _, err := parseHexAddr([]byte(bad)); err == nil {
			t.Errorf("parseHexAddr(%q) accepted malformed input", bad)
		}
	}
}

func TestParseTCPTable(t *testing.T) {
	lo := kernelHex(netip.MustParseAddr("127.0.0.1"), 0x1F90)
	any4 := kernelHex(netip.IPv4Unspecified(), 0x1F90)
	other := kernelHex(netip.MustParseAddr("127.0.0.1"), 0x1F91)
	peer := kernelHex(netip.MustParseAddr("127.0.0.1"), 0xC000)
	table := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: " + lo + " 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0\n" +
		"   1: " + any4 + " 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0\n" +
		"   2: " + other + " 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 100 0 0 10 0\n" +
		// An established connection to the port is no listener.
		"   3: " + lo + " " + peer + " 01 00000000:00000000 00:00000000 00000000  1000        0 444 1 0000000000000000 20 4 30 10 -1\n" +
		"garbage\n"
	got, err := parseTCP(strings.NewReader(table), "tcp", 0x1F90)
	if err != nil {
		t.Fatal(err)
	}
	want := []TCPListener{
		{Addr: netip.MustParseAddrPort("127.0.0.1:8080"), UID: 1000, Inode: 111},
		{Addr: netip.MustParseAddrPort("0.0.0.0:8080"), UID: 0, Inode: 222},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	bad := "header\n   0: " + lo + " 00000000:0000 0A 00000000:00000000 00:00000000 00000000  x        0 111 1\n"
	if _, err := parseTCP(strings.NewReader(bad), "tcp", 0x1F90); err == nil {
		t.Error("a listener line with a malformed uid was accepted")
	}
}

// kernelHex formats addr:port as /proc/net/tcp{,6} does: each 32-bit word
// of the address as it sits in memory, printed as a number.
func kernelHex(addr netip.Addr, port uint16) string {
	b := addr.AsSlice()
	var sb strings.Builder
	for w := 0; w < len(b); w += 4 {
		fmt.Fprintf(&sb, "%08X", binary.NativeEndian.Uint32(b[w:]))
	}
	return fmt.Sprintf("%s:%04X", sb.String(), port)
}

// TestListenersOfThisProcess: sockets this test binds are found in the
// real tables, with this process as their holder.
func TestListenersOfThisProcess(t *testing.T) {
	ln4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln4.Close()
	port := uint16(ln4.Addr().(*net.TCPAddr).Port)
	ls, err := TCPListeners(port)
	if err != nil {
		t.Fatal(err)
	}
	var mine *TCPListener
	for i := range ls {
		if ls[i].Addr == netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port) {
			mine = &ls[i]
		}
	}
	if mine == nil || mine.UID != os.Geteuid() || mine.Inode == 0 {
		t.Fatalf("TCPListeners(%d) = %+v; want 127.0.0.1:%d owned by uid %d", port, ls, port, os.Geteuid())
	}
	found, err := SocketInodes(os.Getpid(), map[uint64]bool{mine.Inode: true, 1: true})
	if err != nil || !found[mine.Inode] || found[1] {
		t.Errorf("SocketInodes(self) = %v, %v; want only %d", found, err, mine.Inode)
	}
	holders, err := SocketHolders(mine.Inode, mine.UID)
	if err != nil || !slices.Equal(holders, []int{os.Getpid()}) {
		t.Errorf("SocketHolders(%d) = %v, %v; want this process %d", mine.Inode, holders, err, os.Getpid())
	}
	if _, err := SocketInodes(1<<30, map[uint64]bool{mine.Inode: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SocketInodes(no such pid) = %v; want fs.ErrNotExist", err)
	}

	if ln6, err := net.Listen("tcp6", "[::1]:0"); err == nil { // hosts without IPv6 have no ::1
		defer ln6.Close()
		p6 := uint16(ln6.Addr().(*net.TCPAddr).Port)
		ls, err := TCPListeners(p6)
		if err != nil || !slices.ContainsFunc(ls, func(l TCPListener) bool { return l.Addr == netip.AddrPortFrom(netip.IPv6Loopback(), p6) }) {
			t.Errorf("TCPListeners(%d) = %+v, %v; want [::1]:%d", p6, ls, err, p6)
		}
	}
}

func TestUID(t *testing.T) {
	if uid, err := UID(os.Getpid()); err != nil || uid != os.Getuid() {
		t.Errorf("UID(self) = %d, %v; want %d", uid, err, os.Getuid())
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if uid, err := UID(cmd.Process.Pid); err != nil || uid != os.Getuid() {
		t.Errorf("UID(child) = %d, %v; want %d", uid, err, os.Getuid())
	}
	if _, err := UID(1 << 30); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("UID(no such pid) = %v; want fs.ErrNotExist", err)
	}
}
