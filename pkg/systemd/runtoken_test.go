package systemd

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/runtoken"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// TestRunnersTagRunsWithTheInstance: both runners give every run
// ROLLBRIDGE_RUN=INSTANCE.RUN with the daemon's instance, whatever the
// spec's environment says, so rollbridgectl recover finds a crashed
// daemon's processes the same way under either.
func TestRunnersTagRunsWithTheInstance(t *testing.T) {
	inst := runtoken.NewInstance()
	cases := []runnerCase{{"exec", func(*testing.T) process.Runner { return process.ExecRunner{Instance: inst} }}}
	if systemdWanted() {
		cases = append(cases, runnerCase{"systemd", func(t *testing.T) process.Runner {
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
			defer cancel()
			r, err := NewRunner(ctx, RunnerOptions{Application: testApp(t), EnvDir: filepath.Join(t.TempDir(), "env"), Instance: inst})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(r.Close)
			return r
		}})
	}
	for _, rc := range cases {
		t.Run(rc.name, func(t *testing.T) {
			spec := shellSpec(t, "web", `echo "run=$ROLLBRIDGE_RUN"; exec sleep 1000`)
			spec.Env = append(spec.Env, runtoken.Env+"=forged")
			p, _ := newProc(t, spec, rc.new(t))
			if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
				t.Fatal(err)
			}
			var tok string
			testutil.Eventually(t, "the run token in the output", func() bool {
				for _, l := range p.Logs() {
					if v, ok := strings.CutPrefix(l.Line, "run="); ok {
						tok = v
						return true
					}
				}
				return false
			})
			if runtoken.Instance(tok) != inst || tok == inst+"." {
				t.Errorf("ROLLBRIDGE_RUN=%q, want %s.RUN", tok, inst)
			}
		})
	}
}
