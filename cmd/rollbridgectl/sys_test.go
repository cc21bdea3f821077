package main

import (
	"net"
	"syscall"
	"testing"
)

func syscallKill0(pid int) error { return syscall.Kill(pid, 0) }

func listenUnix(t *testing.T, path string) net.Listener {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
