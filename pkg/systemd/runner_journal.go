package systemd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// follower reads the journal of every unit in one slice (a single
// `journalctl --follow`) and hands each line to the output function of its
// unit. Units write to the journal, not to the daemon, so their output
// survives the daemon; this is how the daemon gets to see it too.
type follower struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu     sync.Mutex
	routes map[string]*route // by unit name
}

// route is where one run's lines go; its identity tells a run's route
// from a later run's under the same unit name.
type route struct{ out func(process.Line) }

// journalEntry is what the follower reads of one journal entry.
type journalEntry struct {
	Message  json.RawMessage `json:"MESSAGE"`
	Unit     string          `json:"_SYSTEMD_UNIT"`
	Realtime string          `json:"__REALTIME_TIMESTAMP"`
}

// startFollower follows the output of app's units. It matches on the
// fields every unit's lines carry (LogExtraFields) rather than on
// _SYSTEMD_SLICE: journald finds the slice through the writer's cgroup,
// which a process that exits at once no longer has, while the unit's own
// fields and _SYSTEMD_UNIT come with the stream. _TRANSPORT=stdout leaves
// out the daemon's own entries, which carry ROLLBRIDGE_APPLICATION too.
func startFollower(app string) (*follower, error) {
	// From now on: older lines of adopted units are read per unit (see
	// recentLines), and lines of units started from now on all come after.
	since := fmt.Sprintf("--since=@%d", time.Now().Unix())
	cmd := exec.Command("journalctl", "--follow", "--output=json", "--output-fields=MESSAGE,_SYSTEMD_UNIT",
		"--no-pager", "--quiet", since, fieldApplication+"="+app, "_TRANSPORT=stdout")
	return startFollowerCmd(cmd)
}

// startFollowerCmd starts cmd, a journalctl --follow --output=json, as the
// follower.
func startFollowerCmd(cmd *exec.Cmd) (*follower, error) {
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("journal follower: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("journal follower: start journalctl: %w", err)
	}
	f := &follower{cmd: cmd, done: make(chan struct{}), routes: map[string]*route{}}
	go f.read(out)
	return f, nil
}

func (f *follower) read(r io.Reader) {
	defer close(f.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e journalEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		f.mu.Lock()
		rt := f.routes[e.Unit]
		f.mu.Unlock()
		if rt != nil {
			rt.out(e.line())
		}
	}
}

func (e journalEntry) line() process.Line {
	l := process.Line{At: time.Now().UTC(), Line: messageText(e.Message), Stream: "stdout"}
	if us, err := strconv.ParseInt(e.Realtime, 10, 64); err == nil {
		l.At = time.UnixMicro(us).UTC()
	}
	return l
}

// messageText decodes MESSAGE, which journalctl prints as a string, or as
// an array of bytes when it is not valid UTF-8.
func messageText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var b []byte
	var ints []int
	if json.Unmarshal(raw, &ints) == nil {
		b = make([]byte, len(ints))
		for i, v := range ints {
			b[i] = byte(v)
		}
		return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
	}
	return ""
}

// route sends the lines of unit name to out from now on, until unroute.
func (f *follower) route(name string, out func(process.Line)) *route {
	rt := &route{out: out}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[name] = rt
	return rt
}

// unroute stops routing name's lines to rt, after delay: journald may
// still be writing what the unit printed last.
func (f *follower) unroute(name string, rt *route, delay time.Duration) {
	if rt == nil {
		return
	}
	drop := func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.routes[name] == rt { // a later run may have routed the name anew
			delete(f.routes, name)
		}
	}
	if delay <= 0 {
		drop()
		return
	}
	time.AfterFunc(delay, drop)
}

// followerStopWait bounds how long close waits for journalctl to exit on
// SIGINT before it kills it.
const followerStopWait = 2 * time.Second

// close stops journalctl and waits for it. SIGINT first, so it exits
// cleanly; but a journalctl that does not act on it (seen under the lane's
// load: a runner closed right after it started, its journalctl still
// setting up) must not hang the daemon's exit, so SIGKILL follows.
func (f *follower) close() {
	if f.cmd.Process != nil {
		_ = f.cmd.Process.Signal(os.Interrupt) // journalctl exits on SIGINT; Wait below reaps it
		t := time.NewTimer(followerStopWait)
		select {
		case <-f.done:
		case <-t.C:
			_ = f.cmd.Process.Kill() // gone meanwhile is as good
		}
		t.Stop()
	}
	<-f.done
	_ = f.cmd.Wait() // exit status of a follower we stopped: nothing to learn
}

// recentLines reads the last n lines unit name wrote. The follower takes
// over from there (a line written between the two can be missed; one
// printed twice cannot happen, as the follower routes nothing to the unit
// before this returns).
func recentLines(ctx context.Context, name string, n int) []process.Line {
	cmd := exec.CommandContext(ctx, "journalctl", "--output=json", "--output-fields=MESSAGE,_SYSTEMD_UNIT", "--no-pager", "--quiet",
		"-n", strconv.Itoa(n), "_SYSTEMD_UNIT="+name)
	out, err := cmd.Output()
	if err != nil {
		return nil
	}
	var lines []process.Line
	for _, b := range bytes.Split(out, []byte{'\n'}) {
		var e journalEntry
		if json.Unmarshal(b, &e) == nil {
			lines = append(lines, e.line())
		}
	}
	return lines
}
