package process

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// childEnv switches the test binary into a managed child. The tests run it
// as `exec <test binary>` through the Process under test, so every test
// exercises real processes, pipes, signals and process groups.
const childEnv = "RB_PROCESS_CHILD"

// Child modes and the variables they read:
//
//	lines       prints "line 0".."line $RB_LINES-1", then $RB_PARTIAL without a
//	            newline, then exits with $RB_EXIT (default 0)
//	long        prints a line of $RB_LONG 'x' bytes, then "after", then exits 0
//	streams     prints "to stdout" and "to stderr" on their streams, exits 0
//	signals     records each signal it gets (TERM INT QUIT HUP USR1 USR2) as a
//	            line in $RB_RECORD and exits 0 on the ones listed in $RB_QUIT
//	            (comma separated; the others are ignored); prints "tag $RB_TAG"
//	            when set, then "ready"; with $RB_READY_FD it also writes to and
//	            closes that descriptor once ready
//	grandchild  starts the binary again in mode signals ignoring everything, in
//	            the same process group, writes its pid to $RB_PIDFILE and prints
//	            "leader ready"; then exits with $RB_EXIT if set, else waits
//	            (and dies on SIGTERM, which its grandchild ignores)
//	crash       prints "crashing" on stderr and exits with $RB_EXIT
//	crash-until appends to $RB_COUNTER and exits 1 until it has run $RB_UNTIL
//	            times, then prints "up" and waits
//	hog         touches $RB_MIB MiB, prints "allocated" and waits; with
//	            $RB_COUNTER only on its first run
func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	goleak.VerifyTestMain(m)
}

func runChild(mode string) int {
	switch mode {
	case "lines":
		n, _ := strconv.Atoi(os.Getenv("RB_LINES"))
		for i := 0; i < n; i++ {
			fmt.Printf("line %d\n", i)
		}
		fmt.Print(os.Getenv("RB_PARTIAL"))
		code, _ := strconv.Atoi(os.Getenv("RB_EXIT"))
		return code
	case "long":
		n, _ := strconv.Atoi(os.Getenv("RB_LONG"))
		fmt.Println(strings.Repeat("x", n))
		fmt.Println("after")
		return 0
	case "streams":
		fmt.Println("to stdout")
		fmt.Fprintln(os.Stderr, "to stderr")
		return 0
	case "signals":
		return childSignals()
	case "grandchild":
		return childGrandchild()
	case "crash":
		fmt.Fprintln(os.Stderr, "crashing")
		code, _ := strconv.Atoi(os.Getenv("RB_EXIT"))
		return code
	case "crash-until":
		n := bumpCounter()
		until, _ := strconv.Atoi(os.Getenv("RB_UNTIL"))
		if n < until {
			fmt.Println("crash", n)
			return 1
		}
		fmt.Println("up")
		sleepForever()
	case "hog":
		if os.Getenv("RB_COUNTER") == "" || bumpCounter() == 1 {
			mib, _ := strconv.Atoi(os.Getenv("RB_MIB"))
			buf := make([]byte, mib<<20)
			for i := 0; i < len(buf); i += 4096 {
				buf[i] = 1 // touch every page so it counts as resident
			}
			fmt.Println("allocated", mib, "MiB")
			for {
				time.Sleep(time.Hour)
				runtime.KeepAlive(buf)
			}
		}
		sleepForever()
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", mode)
	return 2
}

func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

func bumpCounter() int {
	path := os.Getenv("RB_COUNTER")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		panic(err)
	}
	_, _ = f.WriteString("x")
	_ = f.Close()
	b, _ := os.ReadFile(path)
	return len(b)
}

func record(line string) {
	path := os.Getenv("RB_RECORD")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		panic(err)
	}
	_, _ = f.WriteString(line + "\n")
	_ = f.Close()
}

func childSignals() int {
	quit := map[string]bool{}
	for _, s := range strings.Split(os.Getenv("RB_QUIT"), ",") {
		quit[s] = s != ""
	}
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	if tag := os.Getenv("RB_TAG"); tag != "" {
		fmt.Println("tag", tag)
	}
	fmt.Println("ready")
	if fd, err := strconv.Atoi(os.Getenv("RB_READY_FD")); err == nil {
		f := os.NewFile(uintptr(fd), "ready")
		_, _ = f.WriteString("ready\n")
		_ = f.Close()
	}
	for s := range ch {
		name := unix.SignalName(s.(syscall.Signal))
		record(name)
		if quit[name] {
			return 0
		}
	}
	return 0
}

func childGrandchild() int {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	gc := exec.Command(exe)
	gc.Env = append(os.Environ(), childEnv+"=signals", "RB_QUIT=", "RB_RECORD=", "RB_READY_FD=3")
	gc.Stdout, gc.Stderr = os.Stdout, os.Stderr // it keeps the group's output open
	gc.ExtraFiles = []*os.File{w}
	if err := gc.Start(); err != nil {
		panic(err)
	}
	_ = w.Close()
	_, _ = io.ReadAll(r) // until the grandchild's handlers are installed
	if err := os.WriteFile(os.Getenv("RB_PIDFILE"), []byte(strconv.Itoa(gc.Process.Pid)), 0o600); err != nil {
		panic(err)
	}
	fmt.Println("leader ready")
	if code := os.Getenv("RB_EXIT"); code != "" {
		n, _ := strconv.Atoi(code)
		return n
	}
	sleepForever()
	return 0
}
