package remote

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := []struct {
		in   string
		want Target
	}{
		{"ssh://deploy@web1.example.com", Target{User: "deploy", Host: "web1.example.com"}},
		{"ssh://deploy@10.0.0.7:2222", Target{User: "deploy", Host: "10.0.0.7", Port: 2222}},
		{"ssh://web1", Target{Host: "web1"}},
		{"ssh://ops_user.x@[::1]:22/", Target{User: "ops_user.x", Host: "::1", Port: 22}},
	}
	for _, tc := range good {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	bad := []struct{ in, want string }{
		{"deploy@web1", "only ssh://"},
		{"tcp://web1:22", "only ssh://"},
		{"ssh://-oProxyCommand=x", "not starting with '-'"},
		{"ssh://-l@web1", "not starting with '-'"},
		{"ssh://deploy:secret@web1", "password"},
		{"ssh://de$ploy@web1", "user"},
		{"ssh://deploy@web_1;rm", "host"},
		{"ssh://deploy@web1:0", "port"},
		{"ssh://deploy@web1:65536", "port"},
		{"ssh://deploy@web1:022", "port"},
		{"ssh://deploy@web1:", "port"},
		{"ssh://deploy@web1/srv", "path"},
		{"ssh://deploy@web1?x=1", "query"},
		{"ssh://deploy@", "host"},
		{"ssh://deploy@web1..x", "host"},
	}
	for _, tc := range bad {
		t.Run(tc.in, func(t *testing.T) {
			_, err := Parse(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
}

// The host comes after "--", so ssh never reads it as an option; the
// remote command is the fixed one with each path single-quoted.
func TestArgs(t *testing.T) {
	d := &Dialer{Target: Target{User: "deploy", Host: "web1", Port: 2222}, SSHConfig: "/etc/fleet/ssh_config",
		Config: "/etc/rollbridge/it's.jsonnet", RemoteCtl: "/opt/rb/bin/rollbridgectl"}
	args := d.Args()
	i := slices.Index(args, "--")
	if i < 0 || i != len(args)-3 || args[i+1] != "web1" {
		t.Fatalf("args %q: want ... -- web1 COMMAND", args)
	}
	if want := `'/opt/rb/bin/rollbridgectl' dial-stdio --config '/etc/rollbridge/it'\''s.jsonnet'`; args[len(args)-1] != want {
		t.Fatalf("remote command: got %s, want %s", args[len(args)-1], want)
	}
	for _, pair := range [][2]string{{"-F", "/etc/fleet/ssh_config"}, {"-l", "deploy"}, {"-p", "2222"}} {
		j := slices.Index(args, pair[0])
		if j < 0 || j > i || args[j+1] != pair[1] {
			t.Fatalf("args %q: want %s %s before --", args, pair[0], pair[1])
		}
	}
	if got := (&Dialer{Target: Target{Host: "h"}}).RemoteCommand(); got != "'rollbridgectl' dial-stdio" {
		t.Fatalf("default remote command: got %s", got)
	}
}
