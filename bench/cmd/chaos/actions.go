package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// action is one step of the schedule. Its parameters are drawn from the
// seed when it is chosen, so a seed always gives the same steps.
type action struct {
	kind string
	a, b int // parameters, each in [0, 1<<20)
}

// The schedule's steps and how often each comes up.
var kinds = []struct {
	name   string
	weight int
}{
	{"deploy", 30},
	{"deploy-unhealthy", 5},
	{"deploy-crashing", 5},
	{"rollback", 10},
	{"crash-worker", 12},
	{"crash-web", 4},
	{"sigstop-daemon", 7},
	{"sigstop-mid-deploy", 4},
	{"sigkill-daemon", 5},
	{"sigkill-mid-deploy", 4},
}

// weight is how often kind comes up in this run: -only leaves out the
// others.
func (r *run) weight(kind string, w int) int {
	if len(r.o.only) > 0 && !r.o.only[kind] {
		return 0
	}
	return w
}

func (r *run) next() action {
	total := 0
	for _, k := range kinds {
		total += r.weight(k.name, k.weight)
	}
	n := r.rng.IntN(total)
	a := action{a: r.rng.IntN(1 << 20), b: r.rng.IntN(1 << 20)}
	for _, k := range kinds {
		w := r.weight(k.name, k.weight)
		if n < w {
			a.kind = k.name
			break
		}
		n -= w
	}
	return a
}

// ms maps a parameter onto [lo, hi] milliseconds.
func ms(p, lo, hi int) time.Duration {
	return time.Duration(lo+p%(hi-lo+1)) * time.Millisecond
}

// wait is a pause of the schedule (how long a fault lasts, when it
// strikes), not a synchronisation.
func wait(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func (r *run) do(ctx context.Context, a action) error {
	r.counts[a.kind]++
	switch a.kind {
	case "deploy":
		return r.deploy(ctx, fmt.Sprintf("APP_BOOT_DELAY_MS=%d\n", ms(a.a, 0, 1500).Milliseconds()))
	case "deploy-unhealthy":
		return r.deployFailing(ctx, "APP_HEALTH_STATUS=503\n", "unhealthy")
	case "deploy-crashing":
		return r.deployFailing(ctx, fmt.Sprintf("APP_BOOT_DELAY_MS=%d\nAPP_EXIT_CODE=3\n", ms(a.a, 0, 500).Milliseconds()), "exits at start")
	case "rollback":
		return r.rollback(ctx)
	case "crash-worker":
		return r.crashWorker(ctx, a.a)
	case "crash-web":
		return r.crashWeb(ctx)
	case "sigstop-daemon":
		return r.sigstop(ctx, ms(a.a, 500, 4000))
	case "sigstop-mid-deploy":
		return r.midDeploy(ctx, ms(a.a, 0, 1500), ms(a.b, 500, 3000), false)
	case "sigkill-daemon":
		return r.sigkill(ctx, a.a%2 == 0, "", nil)
	case "sigkill-mid-deploy":
		return r.midDeploy(ctx, ms(a.a, 0, 2000), 0, a.b%2 == 0)
	}
	return fmt.Errorf("unknown action %q", a.kind)
}

// deploy deploys a healthy release: it must succeed and take the traffic.
func (r *run) deploy(ctx context.Context, env string) error {
	id, path, err := r.newRelease("r", env)
	if err != nil {
		return err
	}
	r.load.setExpect("") // the switch happens during the command
	res, err := r.rollbridgectl(ctx, "deploy", "--socket", r.sock, "--release-path", path, "--release-id", id)
	if err != nil {
		return err
	}
	if res.code != 0 {
		return violationf("the deploy of healthy release %s failed (exit %d): %s", id, res.code, res.stderr)
	}
	out, err := deployResult(res)
	if err != nil {
		return err
	}
	if out.ActiveReleaseID != id {
		return violationf("deploy of %s answered active release %s", id, out.ActiveReleaseID)
	}
	r.active = id
	r.load.setExpect(id)
	r.notef("  -> %s active", id)
	return nil
}

// deployFailing deploys a release that cannot become healthy: the deploy
// must fail and the active release keep every request.
func (r *run) deployFailing(ctx context.Context, env, why string) error {
	id, path, err := r.newRelease("f", env)
	if err != nil {
		return err
	}
	res, err := r.rollbridgectl(ctx, "deploy", "--socket", r.sock, "--release-path", path, "--release-id", id)
	if err != nil {
		return err
	}
	if res.code != 1 {
		return violationf("the deploy of release %s, which %s, exited %d, want 1: %s %s", id, why, res.code, res.stdout, res.stderr)
	}
	r.notef("  -> failed as it should: %.160s", res.stderr)
	return nil
}

// rollback goes back to the release active before the current one, when
// one is retained.
func (r *run) rollback(ctx context.Context) error {
	st, err := r.client.Status(ctx)
	if err != nil {
		return fmt.Errorf("status before a rollback: %w", err)
	}
	retained := false
	for _, rel := range st.Releases {
		retained = retained || rel.State == "stopped"
	}
	if !retained {
		r.notef("  -> skipped: no retained release")
		return nil
	}
	r.load.setExpect("")
	r.tl.rollback(time.Now())
	res, err := r.rollbridgectl(ctx, "rollback", "--socket", r.sock)
	if err != nil {
		return err
	}
	if res.code != 0 {
		return violationf("rollback failed (exit %d) with a retained release: %s", res.code, res.stderr)
	}
	out, err := deployResult(res)
	if err != nil {
		return err
	}
	r.active = out.ActiveReleaseID
	r.load.setExpect(r.active)
	r.notef("  -> %s active", r.active)
	return nil
}

// unitProc is a running managed process as status shows it.
type unitProc struct {
	owner string
	p     control.Process
}

// workers lists the running processes of the active release other than
// web, and the singletons and services, ordered by name.
func workers(st control.Status) []unitProc {
	var out []unitProc
	for _, rel := range st.Releases {
		if st.ActiveReleaseID == nil || rel.ReleaseID != *st.ActiveReleaseID {
			continue
		}
		for _, p := range rel.Processes {
			if p.Policy != "proxied" && p.Pid != 0 && p.State == "running" {
				out = append(out, unitProc{"release " + rel.ReleaseID + " " + p.ID, p})
			}
		}
	}
	for _, u := range append(append([]control.Unit{}, st.Singletons...), st.Services...) {
		if u.Process.Pid != 0 && u.Process.State == "running" {
			out = append(out, unitProc{u.ID, u.Process})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].owner < out[j].owner })
	return out
}

// find returns the process owner names in st.
func find(st control.Status, owner string) (control.Process, bool) {
	for _, rel := range st.Releases {
		for _, p := range rel.Processes {
			if "release "+rel.ReleaseID+" "+p.ID == owner {
				return p, true
			}
		}
	}
	for _, u := range append(append([]control.Unit{}, st.Singletons...), st.Services...) {
		if u.ID == owner {
			return u.Process, true
		}
	}
	return control.Process{}, false
}

// crashWorker SIGKILLs the leader of a worker (not the rest of its group):
// the daemon must restart it and leave nothing of the old one behind.
func (r *run) crashWorker(ctx context.Context, pick int) error {
	st, err := r.client.Status(ctx)
	if err != nil {
		return fmt.Errorf("status before a crash: %w", err)
	}
	ws := workers(st)
	if len(ws) == 0 {
		r.notef("  -> skipped: no running worker")
		return nil
	}
	w := ws[pick%len(ws)]
	r.notef("  -> kill -9 %d (%s)", w.p.Pid, w.owner)
	_ = syscall.Kill(w.p.Pid, syscall.SIGKILL) // it may have exited meanwhile: then the daemon restarts it anyway
	return r.replaced(ctx, w.owner, w.p.Pid)
}

// replaced waits until status shows owner running under a pid other than
// old.
func (r *run) replaced(ctx context.Context, owner string, old int) error {
	return poll(ctx, owner+" to be restarted", func() (bool, error) {
		st, err := r.client.Status(ctx)
		if err != nil {
			return false, nil
		}
		p, ok := find(st, owner)
		return ok && p.Pid != 0 && p.Pid != old && p.State == "running", nil
	})
}

// crashWeb SIGKILLs the active release's web process. The daemon restarts
// it; requests that meet the dead process fail meanwhile (502), as the
// app crashed: those are counted under their own cause.
func (r *run) crashWeb(ctx context.Context) error {
	st, err := r.client.Status(ctx)
	if err != nil {
		return fmt.Errorf("status before a crash: %w", err)
	}
	var web control.Process
	owner := ""
	for _, rel := range st.Releases {
		if st.ActiveReleaseID != nil && rel.ReleaseID == *st.ActiveReleaseID {
			for _, p := range rel.Processes {
				if p.Policy == "proxied" {
					web, owner = p, "release "+rel.ReleaseID+" "+p.ID
				}
			}
		}
	}
	if web.Pid == 0 {
		r.notef("  -> skipped: no running web process")
		return nil
	}
	r.notef("  -> kill -9 %d (%s)", web.Pid, owner)
	closeWindow := r.tl.crash(time.Now())
	defer closeWindow()
	_ = syscall.Kill(web.Pid, syscall.SIGKILL) // gone already: the daemon restarts it all the same
	if err := r.replaced(ctx, owner, web.Pid); err != nil {
		return err
	}
	// The window closes once the new process answers, as the proxy
	// would find it.
	url := fmt.Sprintf("http://127.0.0.1:%d/ping", web.Port)
	return poll(ctx, "the restarted web process to answer", func() (bool, error) {
		resp, err := http.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// sigstop freezes the daemon for d, then lets it go on. Nothing may fail:
// connections wait in the kernel meanwhile.
func (r *run) sigstop(ctx context.Context, d time.Duration) error {
	pid := r.d.pid
	r.notef("  -> SIGSTOP %d for %s", pid, d)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP the daemon: %w", err)
	}
	err := wait(ctx, d)
	if err2 := syscall.Kill(pid, syscall.SIGCONT); err2 != nil {
		return fmt.Errorf("SIGCONT the daemon: %w", err2)
	}
	return err
}

// midDeploy starts a deploy of a healthy release (slow to boot) and
// strikes after delay. With stopFor > 0 it freezes the daemon that long,
// which must not make the deploy fail; otherwise it SIGKILLs the daemon
// (see sigkill; systemdStyle says how it comes back).
func (r *run) midDeploy(ctx context.Context, delay, stopFor time.Duration, systemdStyle bool) error {
	id, path, err := r.newRelease("r", "APP_BOOT_DELAY_MS=800\n")
	if err != nil {
		return err
	}
	r.load.setExpect("")
	type result struct {
		res ctlResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := r.rollbridgectl(ctx, "deploy", "--socket", r.sock, "--release-path", path, "--release-id", id)
		done <- result{res, err}
	}()
	if err := wait(ctx, delay); err != nil {
		return err
	}
	if stopFor > 0 {
		if err := r.sigstop(ctx, stopFor); err != nil {
			return err
		}
		res := <-done
		if res.err != nil {
			return res.err
		}
		if res.res.code != 0 {
			return violationf("a deploy of healthy release %s across a SIGSTOP of the daemon failed (exit %d): %s", id, res.res.code, res.res.stderr)
		}
		r.active = id
		r.load.setExpect(id)
		r.notef("  -> %s active", id)
		return nil
	}
	return r.sigkill(ctx, systemdStyle, id, func() (bool, error) {
		res := <-done
		if res.err != nil {
			return false, res.err
		}
		r.notef("  -> the interrupted deploy exited %d", res.res.code)
		return res.res.code == 0, nil
	})
}

// sigkill kills the daemon and brings it back in one of two ways.
//
// systemdStyle: every other process of the run is killed too, as systemd
// kills a service's cgroup when its main process dies, and the daemon
// starts again and restores the active release from the state file.
//
// Otherwise the operator's way without systemd (docs/troubleshooting.md):
// rollbridgectl recover --force stops what the state file recorded, which
// must leave no process of the run behind; then the daemon starts with the
// last active release as its boot release.
//
// pending is the release a deploy cut short by the kill was bringing up
// ("" for none), and deployed tells whether that deploy still succeeded.
// Either release may be the one restored.
func (r *run) sigkill(ctx context.Context, systemdStyle bool, pending string, deployed func() (bool, error)) error {
	mode := "recover --force, then start with a boot release"
	if systemdStyle {
		mode = "kill the rest as systemd would, then start and restore"
	}
	r.load.setExpect("")
	r.notef("  -> SIGKILL daemon %d; %s", r.d.pid, mode)
	r.tl.kill(time.Now())
	r.killDaemon()
	r.restarts++
	if deployed != nil {
		ok, err := deployed()
		if err != nil {
			return err
		}
		if ok {
			r.active = pending
		}
	}
	// gone waits until no process of the run is left. After a recover
	// (recorded holds the process groups the state file named), what is
	// left may be a known defect: a process that left its group with
	// setsid, or one whose group the state file had not recorded yet.
	var gone func(what string, recorded map[int]bool) error
	gone = func(what string, recorded map[int]bool) error {
		var left map[int]ourProc
		// Whatever was killed is gone at once (at most a zombie, which
		// is not counted): the wait covers the time a kernel takes to
		// deliver SIGKILL on a loaded host.
		err := pollFor(ctx, 10*time.Second, what, func() (bool, error) {
			var err error
			left, err = r.ours()
			return len(left) == 0, err
		})
		if err == nil || len(left) == 0 {
			return err
		}
		var l []string
		byDefect := map[string]map[int]ourProc{}
		for pid, p := range left {
			defect := ""
			switch {
			case recorded == nil:
			case p.stat.Session == pid:
				defect = knownEscape
			case !recorded[p.stat.Pgrp]:
				defect = knownUnrecorded
			}
			if defect != "" && r.o.known[defect] {
				if byDefect[defect] == nil {
					byDefect[defect] = map[int]ourProc{}
				}
				byDefect[defect][pid] = p
				continue
			}
			if defect == "" {
				defect = "no known defect"
			}
			l = append(l, fmt.Sprintf("pid %d (%s, ppid %d, pgrp %d, session %d; %s)", pid, p.cmd, p.stat.Ppid, p.stat.Pgrp, p.stat.Session, defect))
		}
		if len(l) > 0 {
			sort.Strings(l)
			return violationf("%s: still running: %s", what, strings.Join(l, "; "))
		}
		for defect, procs := range byDefect {
			r.knownDefect(defect, procs, "survived rollbridgectl recover --force")
		}
		return gone(what+" (after the driver killed what recover left)", nil)
	}
	if systemdStyle {
		if err := r.killOurs(); err != nil {
			return err
		}
		if err := gone("every process of the killed service gone", nil); err != nil {
			return err
		}
		if err := r.startDaemon(ctx, nil); err != nil {
			return err
		}
		st, err := r.client.Status(ctx)
		if err != nil {
			return fmt.Errorf("status after a restart: %w", err)
		}
		got := ""
		if st.ActiveReleaseID != nil {
			got = *st.ActiveReleaseID
		}
		if got == "" || (got != r.active && got != pending) {
			problem := ""
			if st.Daemon != nil && st.Daemon.RestoreProblem != nil {
				problem = *st.Daemon.RestoreProblem
			}
			return violationf("after a SIGKILL and a restart the daemon restored %q, want %q (or %q, the deploy the kill cut short); restore problem: %s",
				got, r.active, pending, problem)
		}
		r.active = got
	} else {
		recorded := map[int]bool{}
		snap, err := r.loadState()
		if err != nil {
			return err
		}
		if snap != nil {
			for _, p := range snap.Processes {
				recorded[p.Pid] = true // each managed process leads its own group
			}
		}
		res, err := r.rollbridgectl(ctx, "recover", "--force", "-c", r.cfgPath)
		if err != nil {
			return err
		}
		if res.code != 0 {
			return violationf("rollbridgectl recover --force exited %d: %s %s", res.code, res.stdout, res.stderr)
		}
		r.notef("  -> recover: %s", strings.Join(strings.Fields(res.stdout), " "))
		if err := gone("rollbridgectl recover --force to stop every process of the killed daemon", recorded); err != nil {
			return err
		}
		if err := r.startDaemon(ctx, &boot{id: r.active, path: r.paths[r.active]}); err != nil {
			return err
		}
	}
	r.load.setExpect(r.active)
	r.notef("  -> daemon %d serves %s", r.d.pid, r.active)
	return nil
}
