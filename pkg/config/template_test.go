package config

import (
	"errors"
	"strings"
	"testing"
)

func fullVars() Vars {
	return Vars{
		ReleasePath: "/srv/app/releases/42", ReleaseID: "v42", Revision: "abc123", Application: "shop",
		ProcessID: "worker", ReplicaIndex: 2, ReplicaCount: 4, Port: 18001,
		Ports:     map[string]int{"web": 18001, "background-jobs-main": 7331},
		ProxyHost: "0.0.0.0", ProxyPort: 8182, UpstreamHost: "127.0.0.1",
		Env: map[string]string{"HOME": "/home/deploy", "EMPTY": ""},
	}
}

func TestRenderEveryVariable(t *testing.T) {
	v := fullVars()
	for _, tc := range []struct{ in, want string }{
		{"{{releasePath}}", "/srv/app/releases/42"},
		{"{{releaseId}}", "v42"},
		{"{{revision}}", "abc123"},
		{"{{application}}", "shop"},
		{"{{processId}}", "worker"},
		{"{{replicaIndex}}", "2"},
		{"{{replicaCount}}", "4"},
		{"{{port}}", "18001"},
		{"{{ports.web}}", "18001"},
		{"{{ports.background-jobs-main}}", "7331"},
		{"{{proxy.host}}", "0.0.0.0"},
		{"{{proxy.port}}", "8182"},
		{"{{proxy.upstreamHost}}", "127.0.0.1"},
		{"{{env.HOME}}", "/home/deploy"},
		{"{{env.EMPTY}}", ""},
		{"{{ releaseId }}", "v42"},
		{"run --port {{port}} --beacon {{ports.background-jobs-main}} in {{releasePath}}/backend", "run --port 18001 --beacon 7331 in /srv/app/releases/42/backend"},
		{"no placeholders", "no placeholders"},
		{"single { brace }", "single { brace }"},
		// Only the Node original's pattern is a placeholder; other text in
		// braces stays as it is.
		{"docker inspect -f '{{json .State}}' x", "docker inspect -f '{{json .State}}' x"},
		{"awk '{print}' # {{", "awk '{print}' # {{"},
		{"{{}} {{ }} {{a b}} {{port", "{{}} {{ }} {{a b}} {{port"},
		{"{{{port}}}", "{18001}"},
		{"{{\t port\u00a0}}", "18001"},
		{"{{ index .Config \"x\" }}{{ports.web}}", "{{ index .Config \"x\" }}18001"},
	} {
		got, err := v.Render("f", tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Render(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestRevisionFallsBackToReleaseID(t *testing.T) {
	v := fullVars()
	v.Revision = ""
	if got, _ := v.Render("f", "{{revision}}"); got != "v42" {
		t.Errorf("got %q, want the release id", got)
	}
}

func TestRenderUnresolved(t *testing.T) {
	for _, tc := range []struct {
		name, in, placeholder, want string
		mod                         func(*Vars)
	}{
		{"unset env", "{{env.NOPE}}", "env.NOPE", "NOPE is not set in the daemon's environment", nil},
		{"unknown port id", "{{ports.db}}", "ports.db", `no process "db" with a port`, nil},
		{"no own port", "{{port}}", "port", `process "worker" has no port`, func(v *Vars) { v.Port = 0 }},
		{"typo", "{{relesePath}}", "relesePath", "did you mean {{releasePath}}?", nil},
		{"no release path", "{{releasePath}}", "releasePath", "has no value", func(v *Vars) { v.ReleasePath = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := fullVars()
			if tc.mod != nil {
				tc.mod(&v)
			}
			_, err := v.Render("processes[worker].command", tc.in)
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want *TemplateError", err)
			}
			if te.Placeholder != tc.placeholder || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "processes[worker].command") {
				t.Errorf("error %q (placeholder %q): want placeholder %q and text %q", err, te.Placeholder, tc.placeholder, tc.want)
			}
		})
	}
}

func TestProcessRender(t *testing.T) {
	p := Process{ID: "worker", Command: "work --shard {{replicaIndex}}/{{replicaCount}}", Cwd: "{{releasePath}}/backend",
		Env: map[string]string{"BEACON": "{{ports.background-jobs-main}}", "BAD": "{{env.MISSING}}"}}
	_, err := p.Render(fullVars())
	if err == nil || !strings.Contains(err.Error(), "processes[worker].env.BAD") {
		t.Fatalf("got %v, want an error naming env.BAD", err)
	}
	delete(p.Env, "BAD")
	r, err := p.Render(fullVars())
	if err != nil {
		t.Fatal(err)
	}
	if r.Command != "work --shard 2/4" || r.Cwd != "/srv/app/releases/42/backend" || r.Env["BEACON"] != "7331" {
		t.Errorf("got %+v", r)
	}
	p.Cwd = ""
	if r, _ = p.Render(fullVars()); r.Cwd != "/srv/app/releases/42" {
		t.Errorf("empty cwd should default to the release path, got %q", r.Cwd)
	}
}
