package process_test

import (
	"context"
	"fmt"
	"os"

	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

func Example() {
	ctx := context.Background()
	p := process.New(process.Spec{
		ID:      "hello",
		Command: "echo hello; echo world",
		Dir:     os.TempDir(),
		Env:     []string{"PATH=/usr/bin:/bin"},
	}, process.ExecRunner{}, events.Discard)
	p.SetAutoRestart(false) // a one-shot command: do not bring it back
	if err := p.Start(ctx, process.ReasonManual); err != nil {
		fmt.Println(err)
		return
	}
	<-p.Exited() // the output is complete once the run has exited
	for _, l := range p.Logs() {
		fmt.Println(l.Stream, l.Line)
	}
	// It ended without being asked to: failed, even with exit code 0 (the
	// spec's rule; with auto-restart on it would now be restarted).
	st := p.Status()
	fmt.Println(st.State, *st.ExitCode)
	_ = p.Stop(ctx) // nothing runs any more; Stop only settles the state
	fmt.Println(p.Status().State)
	// Output:
	// stdout hello
	// stdout world
	// failed 0
	// stopped
}
