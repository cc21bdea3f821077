// Command floor runs one of bench/floor's forwarders: a measuring
// instrument for the suite's floor section (what a Go request path costs
// per hop on this host before any HTTP work), not a proxy.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/rollbridge/rollbridge-go/bench/floor"
)

func main() {
	mode := flag.String("mode", "goroutine", "goroutine (one goroutine per connection), wait (the same, writing inside RawConn.Read), loop (one thread, epoll), loop-h1 (the loop, parsing both heads with internal/h1 and writing them anew) or loop-scan (the loop, checking and rewriting heads in place without allocating)")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (the address taken is printed)")
	upstream := flag.String("upstream", "", "the app's IPv4 address, host:port (required)")
	flag.Parse()
	if *upstream == "" {
		fmt.Fprintln(os.Stderr, "floor: -upstream is required")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp4", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	stop := make(chan struct{})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		close(stop)
		ln.Close()
	}()
	switch *mode {
	case "goroutine":
		err = floor.Goroutine(ln, *upstream)
	case "wait":
		err = floor.Wait(ln, *upstream)
	case "loop":
		err = floor.Loop(ln.(*net.TCPListener), *upstream, floor.PassHeads, stop)
	case "loop-h1":
		err = floor.Loop(ln.(*net.TCPListener), *upstream, floor.ParseHeads, stop)
	case "loop-scan":
		err = floor.Loop(ln.(*net.TCPListener), *upstream, floor.ScanHeads, stop)
	default:
		fmt.Fprintf(os.Stderr, "floor: unknown -mode %q (goroutine, wait, loop, loop-h1 or loop-scan)\n", *mode)
		os.Exit(2)
	}
	select {
	case <-stop:
	default:
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}
