package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// watchEvents is how many of the newest events a frame shows.
const watchEvents = 8

// watch is `status --watch`: a view of the daemon refreshed every
// interval until ctx ends (Ctrl-C) or count frames were drawn (0: no
// limit). On a terminal each frame replaces the last one on the alternate
// screen, cut to the window; otherwise frames follow each other as plain
// text, for a log or a pipe. A daemon that stops answering (a restart) is
// shown as such and asked again at the next tick: the view outlives it.
func watch(c *cli.Context, interval time.Duration, count int) error {
	cl, err := daemonClient(c)
	if err != nil {
		return err
	}
	out := c.App.Writer
	tty, width, height := terminal(out)
	if tty {
		// The alternate screen keeps the shell's scrollback as it was, and
		// leaving it restores what was there.
		fmt.Fprint(out, "\x1b[?1049h\x1b[?25l")
		defer fmt.Fprint(out, "\x1b[?25h\x1b[?1049l")
	}
	var prev *sample
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for frame := 1; ; frame++ {
		cur := takeSample(c.Context, cl, interval)
		lines := renderFrame(cur, prev, interval)
		if cur.err == nil {
			prev = cur
		}
		if tty {
			if _, w, h := terminal(out); w > 0 {
				width, height = w, h
			}
			drawScreen(out, lines, width, height)
		} else {
			if frame > 1 {
				fmt.Fprintln(out)
			}
			fmt.Fprintln(out, strings.Join(lines, "\n"))
		}
		if count > 0 && frame >= count {
			return nil
		}
		select {
		case <-c.Context.Done():
			return nil // Ctrl-C is how a watch ends
		case <-ticker.C:
		}
	}
}

// terminal reports whether w is a terminal, and its size.
func terminal(w io.Writer) (tty bool, width, height int) {
	f, ok := w.(*os.File)
	if !ok {
		return false, 0, 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return false, 0, 0
	}
	return true, int(ws.Col), int(ws.Row)
}

// drawScreen writes lines from the top left corner, each cut to width and
// cleared to its end, at most height of them, and clears what is below:
// no flicker from clearing the whole screen first.
func drawScreen(w io.Writer, lines []string, width, height int) {
	var b strings.Builder
	b.WriteString("\x1b[H")
	for i, l := range lines {
		if height > 0 && i >= height {
			break
		}
		if width > 0 && len([]rune(l)) > width {
			l = string([]rune(l)[:width])
		}
		b.WriteString(l)
		b.WriteString("\x1b[K")
		if i < len(lines)-1 && (height == 0 || i < height-1) {
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\x1b[J")
	_, _ = io.WriteString(w, b.String())
}

// sample is one look at the daemon.
type sample struct {
	at     time.Time
	status control.Status
	events []control.Event
	err    error
}

// takeSample asks for status and the newest events, each bounded by the
// interval, so a daemon that hangs cannot freeze the view.
func takeSample(ctx context.Context, cl *control.Client, interval time.Duration) *sample {
	ctx, cancel := context.WithTimeout(ctx, max(interval, 2*time.Second))
	defer cancel()
	s := &sample{at: time.Now()}
	if s.status, s.err = cl.Status(ctx); s.err != nil {
		return s
	}
	if ev, err := cl.Events(ctx, control.EventsRequest{Limit: watchEvents}); err == nil {
		s.events = ev.Events
	}
	return s
}

// renderFrame is the text of one frame. Every string from the daemon goes
// through printable: no control character reaches the terminal.
func renderFrame(cur, prev *sample, interval time.Duration) []string {
	var lines []string
	clock := cur.at.Format("15:04:05")
	if cur.err != nil {
		lines = append(lines, fmt.Sprintf("rollbridge — %s — the daemon does not answer: %s", clock, oneLine(cur.err.Error())),
			fmt.Sprintf("asking again every %s; Ctrl-C ends the view", interval))
		return lines
	}
	st := cur.status
	head := fmt.Sprintf("rollbridge %s — %s", oneLine(st.Application), clock)
	if d := st.Daemon; d != nil {
		head += fmt.Sprintf(" — daemon pid %d %s, up %s", d.Pid, oneLine(d.Version), age(cur.at, d.StartedAt.Time))
	}
	lines = append(lines, head)
	active := "none"
	if st.ActiveReleaseID != nil {
		active = oneLine(*st.ActiveReleaseID)
	}
	proxy := fmt.Sprintf("active release %s — proxy %s:%d — held %d, hold gave up %d",
		active, oneLine(st.Proxy.Host), st.Proxy.Port, st.Proxy.Held, st.Proxy.HoldGaveUp)
	if el := st.Proxy.EventLoop; el != nil {
		proxy += fmt.Sprintf(" — event loop (%d threads) served %d, handed off %d", el.Threads, el.Served, el.HandedOff)
	}
	if st.Proxy.Paused {
		proxy += " — PAUSED until " + st.Proxy.PausedUntil.UTC().Format(time.TimeOnly)
	}
	if st.Proxy.Maintenance != nil {
		proxy += " — MAINTENANCE"
	}
	if st.Proxy.HostDrained {
		proxy += " — HOST DRAINED"
		if !st.Proxy.HostDrainedSince.IsZero() {
			proxy += " since " + st.Proxy.HostDrainedSince.UTC().Format(time.DateTime) + " UTC"
		}
	}
	if d := st.Daemon; d != nil && d.CommandInProgress != nil {
		proxy += " — " + oneLine(*d.CommandInProgress)
	}
	lines = append(lines, proxy)
	if c := st.Canary; c != nil {
		sticky := "by client address"
		if c.Sticky == "cookie" {
			sticky = "by cookie " + oneLine(c.Cookie)
		}
		lines = append(lines, fmt.Sprintf("canary release %s — %g%% of new clients, sticky %s", oneLine(c.ReleaseID), c.Percent, sticky))
	}
	lines = append(lines, "")

	lines = append(lines, table(func(tw io.Writer) {
		fmt.Fprintln(tw, "RELEASE\tSTATE\tREVISION\tHTTP\tWS\tREQ/S\tAGE")
		for i := len(st.Releases) - 1; i >= 0; i-- { // newest first
			r := st.Releases[i]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", oneLine(r.ReleaseID), oneLine(r.State), oneLine(r.Revision),
				r.Connections.HTTP, r.Connections.WebSocket, rate(r, prev, cur.at), age(cur.at, r.CreatedAt.Time))
		}
	})...)
	lines = append(lines, "")

	lines = append(lines, table(func(tw io.Writer) {
		fmt.Fprintln(tw, "PROCESS\tRELEASE\tPOLICY\tSTATE\tPID\tRESTARTS\tRSS\tUPTIME")
		row := func(p control.Process, release string) {
			pid, rss, up := "-", "-", "-"
			if p.Pid != 0 {
				pid = fmt.Sprint(p.Pid)
			}
			if p.RSSBytes > 0 {
				rss = bytesIEC(p.RSSBytes)
			}
			if p.UptimeMs != nil {
				up = duration(time.Duration(*p.UptimeMs) * time.Millisecond)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", oneLine(p.ID), release, oneLine(p.Policy), oneLine(p.State), pid, p.Restarts, rss, up)
		}
		for i := len(st.Releases) - 1; i >= 0; i-- {
			r := st.Releases[i]
			if r.State == "stopped" || r.State == "failed" {
				continue // their processes are gone; the release table lists them
			}
			for _, p := range r.Processes {
				row(p, oneLine(r.ReleaseID))
			}
		}
		for _, u := range append(append([]control.Unit(nil), st.Services...), st.Singletons...) {
			row(u.Process, oneLine(u.ReleaseID))
		}
	})...)

	if len(st.Orphans) > 0 {
		lines = append(lines, "", fmt.Sprintf("%d orphaned processes of an earlier daemon: see rollbridgectl doctor / recover", len(st.Orphans)))
	}
	if len(cur.events) > 0 {
		lines = append(lines, "", "RECENT EVENTS")
		for _, e := range cur.events {
			lines = append(lines, oneLine(e.At.Time.Local().Format("15:04:05")+" "+e.Message+formatData(e.Data)))
		}
	}
	return lines
}

// table renders rows written by fill as aligned columns, one string per line.
func table(fill func(io.Writer)) []string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fill(tw)
	_ = tw.Flush() // a strings.Builder does not fail
	return strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
}

// rate is the release's requests per second since the previous sample, "-"
// with none to compare with (the first frame, a release that is new, or a
// count that went back because a rollback started a new run of it).
func rate(r control.Release, prev *sample, now time.Time) string {
	if prev == nil {
		return "-"
	}
	for _, p := range prev.status.Releases {
		if p.ReleaseID != r.ReleaseID {
			continue
		}
		secs := now.Sub(prev.at).Seconds()
		if r.Requests < p.Requests || secs <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(r.Requests-p.Requests)/secs)
	}
	return "-"
}

// oneLine is s made safe for one line of a terminal: control characters
// (newlines included) escaped.
func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\t", `\t`).Replace(printable(s))
}

// age is the time from t to now, as duration writes it; "-" without t.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration(now.Sub(t))
}

// duration writes d coarsely, the way top does: 42s, 5m07s, 3h12m, 2d04h.
func duration(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// bytesIEC writes n in KiB, MiB or GiB with one decimal.
func bytesIEC(n uint64) string {
	const k = 1024
	switch {
	case n < k*k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	case n < k*k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	default:
		return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
	}
}
