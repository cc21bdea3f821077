package process

import "github.com/rollbridge/rollbridge-go/internal/procfs"

// StartTime returns when pid started, in clock ticks since boot (field 22 of
// /proc/PID/stat). A pid and its start time together name one process: a
// recycled pid has a different start time, which is how orphan detection
// tells a leftover child from an unrelated newcomer.
func StartTime(pid int) (uint64, error) { return procfs.StartTime(pid) }

// Alive reports whether pid is a running (not zombie) process that started
// at startTime; startTime 0 skips that check.
func Alive(pid int, startTime uint64) bool { return procfs.Alive(pid, startTime) }
