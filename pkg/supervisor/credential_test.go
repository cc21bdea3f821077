package supervisor

import (
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/pkg/config"
)

func TestCredentialResolvesOnTheHost(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := credential("", ""); c != nil || err != nil {
		t.Errorf("unset: %+v, %v; want the daemon's own (nil)", c, err)
	}
	for _, name := range []string{"nobody", nobody.Uid} {
		c, err := credential(name, "")
		if err != nil || strconv.Itoa(int(c.UID)) != nobody.Uid || strconv.Itoa(int(c.GID)) != nobody.Gid {
			t.Errorf("user %q: %+v, %v; want uid %s gid %s (its primary group)", name, c, err, nobody.Uid, nobody.Gid)
		}
	}
	if c, err := credential("nobody", "0"); err != nil || c.GID != 0 {
		t.Errorf("nobody with group 0: %+v, %v", c, err)
	}
	if c, err := credential("", "0"); err != nil || int(c.UID) != os.Geteuid() || c.GID != 0 {
		t.Errorf("group only: %+v, %v; want the daemon's uid with gid 0", c, err)
	}
	if _, err := credential("no-such-user-rb", ""); err == nil || !strings.Contains(err.Error(), `user "no-such-user-rb"`) {
		t.Errorf("unknown user: %v, want an error naming it", err)
	}
	if _, err := credential("nobody", "no-such-group-rb"); err == nil || !strings.Contains(err.Error(), `group "no-such-group-rb"`) {
		t.Errorf("unknown group: %v, want an error naming it", err)
	}
}

func TestRunAsProcessWinsOverTheConfig(t *testing.T) {
	cfg := &config.Config{User: "app", Group: "app"}
	for _, tc := range []struct {
		p           config.Process
		user, group string
	}{
		{config.Process{}, "app", "app"},
		{config.Process{User: "web"}, "web", ""}, // web's own group, not the config's
		{config.Process{Group: "www"}, "app", "www"},
		{config.Process{User: "web", Group: "www"}, "web", "www"},
	} {
		if u, g := cfg.RunAs(&tc.p); u != tc.user || g != tc.group {
			t.Errorf("RunAs(%+v) = %q, %q; want %q, %q", tc.p, u, g, tc.user, tc.group)
		}
	}
}
