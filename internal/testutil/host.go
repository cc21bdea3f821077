package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// NeedTool makes a test that runs the host program name (GNU screen, say)
// depend on it being installed. Where it is missing, the test is skipped
// with a one-line reason, so the README's test command passes on a fresh
// machine; under CI (the CI environment variable is set, as .ci/run does)
// a missing program fails the test instead, because CI installs every
// tool the tests use and a skip there would hide lost coverage.
func NeedTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		missing(t, name+" is not installed")
	}
}

// NeedRoot is NeedTool for tests that must run as root, for instance to
// stage a file or process owned by another user. Outside CI a test run by
// another user is skipped; under CI it fails.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "this test needs root")
	}
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI must provide it (.ci/run installs the host tools)", why)
	}
	t.Skipf("%s; skipped (with CI set this fails)", why)
}
