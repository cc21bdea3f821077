package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// sshHost is a real sshd (Debian's openssh-server) on 127.0.0.1, run by
// the test as the current user with a throwaway host key and client key.
type sshHost struct {
	url       string // ssh://USER@127.0.0.1:PORT
	sshConfig string // a client config that trusts only that key and host
}

func startSSHD(t *testing.T) sshHost {
	t.Helper()
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		testutil.NeedTool(t, "sshd")
		sshd = "sshd"
	}
	testutil.NeedTool(t, "ssh")
	testutil.NeedTool(t, "ssh-keygen")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd's privilege separation directory, which Debian creates at
		// boot (tmpfiles) and a container may lack.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for _, k := range []string{"host", "user"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub := func(k string) string {
		b, err := os.ReadFile(filepath.Join(dir, k+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	// A free port: sshd binds its own, so the usual :0 cannot be handed over.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close() // sshd takes the port next
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("authorized_keys", pub("user")+"\n")
	write("known_hosts", fmt.Sprintf("[127.0.0.1]:%d %s\n", port, pub("host")))
	sshdConfig := write("sshd_config", fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s/host
AuthorizedKeysFile %s/authorized_keys
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
`, port, dir, dir))
	clientConfig := write("ssh_config", fmt.Sprintf(`Host *
  IdentityFile %s/user
  IdentitiesOnly yes
  UserKnownHostsFile %s/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
`, dir, dir))
	cmd := exec.Command(sshd, "-D", "-e", "-f", sshdConfig)
	var log lockedLog
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // ends with the kill below
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sshd's log:\n%s", log.String())
		}
	})
	testutil.Eventually(t, "sshd to listen", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	return sshHost{url: fmt.Sprintf("ssh://%s@127.0.0.1:%d", me.Username, port), sshConfig: clientConfig}
}

// Every daemon command works through --host ssh:// against a real sshd,
// with deploy's progress streamed; host-local commands refuse; and each
// failure says which part failed: ssh, the remote binary, or the daemon.
func TestRemoteOverSSH(t *testing.T) {
	h := startSSHD(t)
	e := startDaemon(t, "[]")
	remoteCtl := ctlBinary(t)
	dir := t.TempDir()
	remote := func(args ...string) (string, string, int) {
		t.Helper()
		return runCtl(t, append([]string{"--host", h.url, "--ssh-config", h.sshConfig, "--remote-ctl", remoteCtl}, args...)...)
	}

	stdout, stderr, code := remote("deploy", "-c", e.cfg, "--release-path", dir, "--release-id", "v1")
	if code != 0 {
		t.Fatalf("remote deploy: exit %d\n%s", code, stderr)
	}
	var dr control.DeployResult
	if err := json.Unmarshal([]byte(stdout), &dr); err != nil || dr.ActiveReleaseID != "v1" {
		t.Fatalf("remote deploy printed %q (%v), want v1 active", stdout, err)
	}
	if !strings.Contains(stderr, "rollbridgectl: traffic switched releaseId=v1") {
		t.Fatalf("remote deploy's progress on stderr: got %q, want the traffic switch", stderr)
	}
	stdout, stderr, code = remote("status", "-c", e.cfg)
	var st control.Status
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil || st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" {
		t.Fatalf("remote status: exit %d %q %s, want v1 active", code, stdout, stderr)
	}
	if _, stderr, code = remote("deploy", "--socket", e.sock, "--release-path", dir, "--release-id", "v2"); code != 0 {
		t.Fatalf("remote deploy v2 by --socket: exit %d\n%s", code, stderr)
	}
	if stdout, stderr, code = remote("rollback", "-c", e.cfg); code != 0 || !strings.Contains(stdout, `"activeReleaseId": "v1"`) {
		t.Fatalf("remote rollback: exit %d %q %s, want v1 active again", code, stdout, stderr)
	}
	if stdout, stderr, code = remote("logs", "-c", e.cfg, "--process", "web"); code != 0 || !strings.Contains(stdout, "== web") {
		t.Fatalf("remote logs: exit %d %q %s", code, stdout, stderr)
	}
	if stdout, stderr, code = remote("events", "-c", e.cfg, "--json"); code != 0 || !strings.Contains(stdout, "traffic switched") {
		t.Fatalf("remote events: exit %d %q %s", code, stdout, stderr)
	}
	// The daemon's refusal comes back as it is, with its exit code.
	if _, stderr, code = remote("drain-host", "-c", e.cfg); code != exitFailed || !strings.Contains(stderr, "proxy.hostHealthPath") {
		t.Fatalf("remote drain-host without a health path: exit %d %q, want 1 naming proxy.hostHealthPath", code, stderr)
	}

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"host-local command", []string{"--host", h.url, "doctor", "-c", e.cfg}, exitUsage, "doctor works on this host only"},
		{"bad URL", []string{"--host", "ssh://-oProxyCommand=touch@x", "status"}, exitUsage, "must be letters"},
		{"relative release path", []string{"--host", h.url, "deploy", "--release-path", "rel"}, exitUsage, "absolute path on the remote host"},
		{"ssh fails", []string{"--host", "ssh://nobody@127.0.0.1:1", "--ssh-config", h.sshConfig, "status"}, exitUnreachable, "ssh to ssh://nobody@127.0.0.1:1 failed (exit 255)"},
		{"no remote binary", []string{"--host", h.url, "--ssh-config", h.sshConfig, "--remote-ctl", "/nonexistent/rollbridgectl", "status", "-c", e.cfg},
			exitUnreachable, "rollbridgectl could not be run on " + h.url + " (exit 127)"},
		{"no remote daemon", []string{"--host", h.url, "--ssh-config", h.sshConfig, "--remote-ctl", remoteCtl, "status", "--socket", filepath.Join(dir, "none.sock")},
			exitUnreachable, "on " + h.url + ", no daemon answers: rollbridgectl: cannot reach the daemon"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCtl(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("got exit %d %q, want %d containing %q", code, stderr, tc.code, tc.want)
			}
		})
	}

	// A remote path is quoted for the remote shell: it never runs as code.
	marker := filepath.Join(dir, "pwned")
	evil := filepath.Join(dir, "x'; touch "+marker+"; echo '")
	_, stderr, code = remote("status", "-c", evil)
	if code == 0 || !strings.Contains(stderr, "does not exist") {
		t.Fatalf("status -c %q: exit %d %q, want the remote config to be missing", evil, code, stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("the remote shell ran part of the config path: %s exists", marker)
	}
}

// lockedLog collects a process's output for a failure message.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
