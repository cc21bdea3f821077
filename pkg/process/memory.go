package process

import (
	"context"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// defaultCheckInterval is the memory sampling period when the policy has none.
const defaultCheckInterval = 5 * time.Second

// sample measures the group's RSS every CheckInterval while the leader runs,
// warns once above WarnBytes and hands over to the monitor above LimitBytes.
func (p *Process) sample(r *run) {
	defer close(r.samplerDone)
	m := r.spec.Memory
	interval := m.CheckInterval
	if interval <= 0 {
		interval = defaultCheckInterval
	}
	for {
		// Ticks fall on multiples of the interval, so every process with
		// the same interval wakes at the same moment and their samples
		// share one look at the daemon's children (see shareWindow).
		t := time.NewTimer(time.Until(nextTick(time.Now(), interval)))
		select {
		case <-r.h.Done():
			t.Stop()
			return
		case <-t.C:
		}
		members := r.h.Members()
		var sum uint64
		for _, mb := range members {
			sum += mb.RSSBytes
		}
		var cgMem *uint64
		if c, ok := r.h.(cgroupMemory); ok {
			if v, ok := c.CgroupMemory(); ok {
				cgMem = &v
			}
		}
		p.mu.Lock()
		if r.stopping || r.leaderGone {
			p.mu.Unlock()
			return // a stop is under way; its exit is not a memory problem
		}
		if p.cur == r {
			p.rss, p.cgroupMem, p.children = sum, cgMem, members
		}
		warn := m.WarnBytes > 0 && sum > m.WarnBytes && !r.warned
		r.warned = r.warned || warn
		p.mu.Unlock()
		if warn {
			p.emit(r.spec, events.MemoryWarning, map[string]any{"rssBytes": sum, "warnBytes": m.WarnBytes})
		}
		if sum > m.LimitBytes {
			if p.overLimit != nil {
				// Reported once per run, and the owner told at every
				// sample: it may not be able to act on the first one.
				if !r.limitReported {
					r.limitReported = true
					p.emit(r.spec, events.MemoryLimitExceeded, map[string]any{"rssBytes": sum, "limitBytes": m.LimitBytes})
				}
				p.overLimit()
				continue
			}
			p.emit(r.spec, events.MemoryLimitExceeded, map[string]any{"rssBytes": sum, "limitBytes": m.LimitBytes})
			close(r.memLimit)
			return
		}
	}
}

// WithMemoryReport makes the process report its memory limit instead of
// restarting itself when its RSS goes over it: overLimit is called after
// every sample above the limit (so at most every CheckInterval, from the
// sampler's goroutine, never with a lock held), and the run goes on. The
// "memory limit exceeded" event is emitted once per run. The caller
// replaces the process its own way: the supervisor starts a new copy of the
// proxied process on a new port and moves its traffic there before this
// one stops, which a restart in place cannot do without dropping requests.
// overLimit must return quickly.
func WithMemoryReport(overLimit func()) Option { return func(p *Process) { p.overLimit = overLimit } }

// WithMemoryReplacementOf makes a new process the successor of prev, which
// went over its memory limit and is being replaced (see WithMemoryReport):
// it takes over prev's restart count and counts one more memory restart,
// at the time New is called. Its first start should use ReasonMemory.
func WithMemoryReplacementOf(prev *Process) Option {
	return func(p *Process) {
		prev.mu.Lock()
		restarts, mem := prev.restarts, prev.memRestarts
		prev.mu.Unlock()
		p.restarts, p.memRestarts, p.lastMemRestart = restarts, mem+1, time.Now().UTC()
	}
}

// Members lists the live processes of the current run: the leader and
// every descendant the runner tracks (see Handle.Members), with their
// command and RSS. It is empty when the process does not run. It reads
// /proc (or the run's cgroup) on every call.
func (p *Process) Members() []Member {
	p.mu.Lock()
	r := p.cur
	live := r != nil && !r.leaderGone
	p.mu.Unlock()
	if !live {
		return nil
	}
	return r.h.Members()
}

// nextTick is the first multiple of interval (counted from the Unix epoch)
// after now.
func nextTick(now time.Time, interval time.Duration) time.Time {
	return now.Truncate(interval).Add(interval)
}

// memoryRestart stops r gracefully and starts the process again with
// reason memory, unless someone else took over r meanwhile, or automatic
// restarts are off (a retired release's companion, a singleton of a
// stopped release): as in the Node original, such a process is stopped
// and stays stopped, for a crash would not bring it back either.
func (p *Process) memoryRestart(r *run) {
	select {
	case p.op <- struct{}{}:
	case <-r.cancel:
		return // a Stop, Start or Restart owns r now
	}
	defer p.release()
	p.mu.Lock()
	if r.canceled || r.leaderGone || r.stopping || p.cur != r {
		p.mu.Unlock()
		return // crashed meanwhile (the monitor restarts it) or taken over
	}
	r.stopping = true
	p.state = Stopping
	p.mu.Unlock()
	if err := p.stopSequence(r); err != nil {
		p.emit(r.spec, events.ProcessStopFailed, map[string]any{events.KeyError: err.Error()})
		return
	}
	p.mu.Lock()
	canceled, again := r.canceled, p.autoRestart
	switch {
	case canceled:
	case !again:
		p.state = Stopped
		p.giveUpLocked()
	default:
		p.memRestarts++ // counted only when it starts again, as in the original
		p.lastMemRestart = time.Now().UTC()
	}
	p.mu.Unlock()
	if canceled || !again {
		return // a Stop arrived during the sequence (it wins), or nothing brings it back
	}
	if err := p.startLocked(context.Background(), ReasonMemory); err != nil {
		p.emit(r.spec, events.MemoryRestartFailed, map[string]any{events.KeyReason: string(ReasonMemory), events.KeyError: err.Error()})
	}
}
