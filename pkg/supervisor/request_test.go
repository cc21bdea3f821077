package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestDeployRefusesIDsOutsideTheirCharacterSet: a release id or revision
// reaches shell commands, file names and terminals; one outside its set
// is refused before anything starts, with the character and its position.
func TestDeployRefusesIDsOutsideTheirCharacterSet(t *testing.T) {
	h := newHarness(t, webConfig(t, "[]"))
	path := h.release("r", nil)
	for _, tc := range []struct {
		name string
		req  DeployRequest
		want string
	}{
		{"revision", DeployRequest{ReleasePath: path, ReleaseID: "v1", Revision: "fix$(touch${IFS}/tmp/x)"},
			`revision "fix$(touch${IFS}/tmp/x)" must be 1 to 200 letters, digits, dots, underscores, hyphens, slashes, plus or at signs, starting with a letter or digit; '$' at position 4 is not allowed`},
		{"release id", DeployRequest{ReleasePath: path, ReleaseID: "v1\x1b[2J"}, `release id "v1\x1b[2J" must be`},
		{"revision as the id", DeployRequest{ReleasePath: path, Revision: "feature/login"},
			`the revision is the release id when none is given, and release id "feature/login" must be`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.sup.Deploy(context.Background(), tc.req, nil)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
	if st := h.status(); len(st.Releases) != 0 {
		t.Errorf("a refused deploy left releases: %s", dump(st.Releases))
	}
	// A branch name is a revision, given an id of its own.
	if _, err := h.sup.Deploy(context.Background(), DeployRequest{ReleasePath: path, ReleaseID: "v1", Revision: "release/1.2+b@x"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sup.Rollback(context.Background(), "v0\n", nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `release id "v0\n" must be`) {
		t.Errorf("rollback to a malformed id: %v", err)
	}
}
