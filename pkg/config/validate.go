package config

import (
	"fmt"
	"sort"
	"strings"
)

// validate checks the rules that span fields, and those that read a value
// applyDefaults may have filled in. It runs after the walk even when that
// found problems, so every rule first checks that the fields it reads were
// decoded cleanly: a follow-on issue would only add noise.
func validate(c *collector, cfg *Config) {
	if !c.set[&cfg.Control.Path] {
		checkSocketPath(c, cfg.Control.Path) // the default grows with application
	}
	var proxied []string
	seen := map[string]int{}
	withPort := map[string]bool{}
	for _, p := range cfg.Processes {
		if p.ID != "" {
			seen[p.ID]++
		}
		if p.Policy == Proxied {
			proxied = append(proxied, p.ID)
		}
		if p.Port != nil {
			withPort[p.ID] = true
		}
	}
	switch {
	case c.failedAt("processes"):
		// processes is missing or not an array; that issue says it all.
	case len(proxied) == 0:
		c.add("processes", "Mark the process that serves HTTP with policy: 'proxied' so rollbridge knows where to forward traffic.",
			"exactly one process must have policy proxied; found none")
	case len(proxied) > 1:
		c.add("processes", "Keep policy: 'proxied' on one process only; use companion for the others.",
			"exactly one process must have policy proxied; found %d (%s)", len(proxied), strings.Join(proxied, ", "))
	}
	var dups []string
	for id, n := range seen {
		if n > 1 {
			dups = append(dups, id)
		}
	}
	sort.Strings(dups)
	for _, id := range dups {
		c.add("processes", fmt.Sprintf("Give each process its own id; %q is used %d times.", id, seen[id]), "duplicate process id %q", id)
	}
	for i, p := range cfg.Processes {
		validateProcess(c, processPath(i, p.ID), &p, withPort)
	}
	validateUnitRuntime(c, cfg)
	metricsConflict(c, cfg)
	if lt := cfg.LegacyTakeover; lt != nil && len(lt.Screens) == 0 && len(lt.Processes) == 0 && !c.failed("legacyTakeover") {
		// Matching nothing is never what was meant, and predeploy-cleanup
		// would then report a takeover it did not do.
		c.add("legacyTakeover", "Set legacyTakeover.screens or legacyTakeover.processes to what predeploy-cleanup may stop, or remove legacyTakeover.",
			"must define at least one screen or process matcher")
	}
}

// validateUnitRuntime refuses systemd unit settings with runtime: 'exec':
// that runtime cannot apply them, and a sandbox that is written down but
// not in force is worse than none, since nobody looks for the hole. (With
// 'auto' it depends on the host: doctor warns, and a daemon that ends up
// with the exec runtime logs that it ignores them.) It is the same rule
// as a stopSignal beside a stopCommand: a setting that would be ignored is
// an error.
func validateUnitRuntime(c *collector, cfg *Config) {
	if cfg.Runtime != RuntimeExec {
		return
	}
	const fix = "Remove the systemd settings, or set runtime to 'systemd' (or 'auto': systemd units when the daemon runs as a systemd service)."
	if len(cfg.Systemd) > 0 {
		c.add("systemd", fix, "unit settings would be ignored: runtime is 'exec', which runs processes as the daemon's children, not as systemd units")
	}
	for i := range cfg.Processes {
		if p := &cfg.Processes[i]; len(p.Systemd) > 0 {
			c.add(processPath(i, p.ID)+".systemd", fix, "unit settings would be ignored: runtime is 'exec', which runs processes as the daemon's children, not as systemd units")
		}
	}
}

func validateProcess(c *collector, path string, p *Process, withPort map[string]bool) {
	if strings.Contains(p.ID, "#") {
		c.add(path+".id", fmt.Sprintf("Rename it without '#', e.g. %q.", strings.ReplaceAll(p.ID, "#", "-")),
			"%q must not contain '#' (reserved for replica ids such as worker#0)", p.ID)
	}
	policyOK := !c.failed(path + ".policy")
	if p.Policy == Proxied && p.Port == nil && !c.failed(path+".port") {
		c.add(path+".port", "Give the proxied process a port range, e.g. port: {from: 18182, to: 18299}, and bind {{port}} in its command.",
			"the proxied process must define a port")
	}
	if p.Replicas > 1 && policyOK {
		switch {
		case p.Policy != Companion:
			c.add(path+".replicas", "Remove replicas, or make the process a port-less companion (a worker pool).",
				"replicas > 1 is only allowed on a companion; this process is %s", p.Policy)
		case p.Port != nil:
			c.add(path+".replicas", "Remove the port from the worker pool, or set replicas to 1.",
				"replicas > 1 is not allowed on a process with a port (instances would compete for it)")
		}
	}
	if p.DeployStrategy == Handoff && policyOK {
		switch {
		case p.Policy != Service:
			c.add(path+".deployStrategy", "Remove deployStrategy, or make the process a service; only a service is handed off between releases.",
				"deployStrategy handoff is only allowed on a service; this process is %s", p.Policy)
		case p.Port == nil && !c.failed(path+".port"):
			c.add(path+".port", "Give the handoff service a port range with room for two releases, e.g. port: {from: 7331, to: 7399}.",
				"a handoff service must define a port range: old and new instances run side by side")
		case p.Port != nil && p.Port.From == p.Port.To:
			c.add(path+".port", fmt.Sprintf("Widen it, e.g. port: {from: %d, to: %d}.", p.Port.From, min(p.Port.From+99, 65535)),
				"a handoff service must use a multi-port range: old and new instances run side by side, got the single port %d", p.Port.From)
		}
	}
	if p.NonBlockingDrain && p.Policy != Companion && policyOK {
		c.add(path+".nonBlockingDrain", "Remove nonBlockingDrain; it only applies to companion workers.",
			"nonBlockingDrain is only allowed on a companion; this process is %s", p.Policy)
	}
	if l := p.Lifecycle; l != nil {
		if l.DrainCommand != "" && l.DrainTimeoutMs <= 0 {
			c.add(path+".lifecycle.drainTimeoutMs", "Set lifecycle.drainTimeoutMs to the longest the drain may take, e.g. 60000.",
				"drainCommand requires a positive drainTimeoutMs to bound it")
		}
		if l.StopCommand != "" && p.StopSignal != DefaultStopSignal {
			c.add(path+".stopSignal", "Use either lifecycle.stopCommand or stopSignal, not both.",
				"stopSignal %s would be ignored because lifecycle.stopCommand runs instead of the signal", p.StopSignal)
		}
	}
	if m := p.Memory; m != nil && m.WarnBytes > 0 && m.WarnBytes >= m.LimitBytes && !c.failed(path+".memory") {
		c.add(path+".memory.warnBytes", "Set warnBytes below limitBytes, or 0 to turn the warning off.",
			"warnBytes (%d) must be below limitBytes (%d)", m.WarnBytes, m.LimitBytes)
	}
	validateTemplates(c, path, p, withPort)
}

// validateTemplates catches misspelled placeholders, references to ports
// that cannot exist, and values placed in the command where the shell
// would read them as syntax. {{env.X}} is checked at start, against the
// daemon's env.
func validateTemplates(c *collector, path string, p *Process, withPort map[string]bool) {
	check := func(field, s string) {
		pieces := parseTemplate(s)
		var names []string
		for _, p := range pieces {
			if p.ph {
				names = append(names, p.name)
			}
		}
		if field == "command" {
			// The command is shell syntax: a value may only stand where
			// quoting keeps it one literal piece of a word.
			for i, ctx := range commandContexts(pieces) {
				if n := names[i]; !numeric(n) && !ctx.safe() {
					c.add(path+".command", unsafeFix(n)+".",
						"{{%s}} stands %s, where no quoting keeps its value from being read as shell syntax", n, ctx.where())
				}
			}
		}
		for _, n := range names {
			switch {
			case containsStr(templateNames, n):
				if n == "port" && p.Port == nil && !c.failed(path+".port") {
					c.add(path+"."+field, "Add a port to this process, or use {{ports.<id>}} for another process's port.",
						"{{port}} is used but this process has no port")
				}
			case strings.HasPrefix(n, "ports."):
				id := strings.TrimPrefix(n, "ports.")
				if !withPort[id] {
					ids := make([]string, 0, len(withPort))
					for k := range withPort {
						ids = append(ids, k)
					}
					sort.Strings(ids)
					fix := "No process has a port; add one to the process you mean to reference."
					if len(ids) > 0 {
						fix = "Reference a process that has a port: " + strings.Join(ids, ", ") + "."
					}
					if s := suggest(id, ids); s != "" {
						fix = fmt.Sprintf("Did you mean {{ports.%s}}?", s)
					}
					c.add(path+"."+field, fix, "{{%s}} names no process with a port", n)
				}
			case strings.HasPrefix(n, "env.") && len(n) > len("env."):
			default:
				fix := "Use one of the template variables listed in docs/config.md."
				if s := suggest(n, templateNames); s != "" {
					fix = fmt.Sprintf("Did you mean {{%s}}?", s)
				}
				c.add(path+"."+field, fix, "{{%s}} is not a known template variable", n)
			}
		}
	}
	check("command", p.Command)
	check("cwd", p.Cwd)
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		check("env."+k, p.Env[k])
	}
}
