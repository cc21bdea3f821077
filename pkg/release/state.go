package release

// State is where a release is in its life: Starting -> Active | Failed,
// Active -> Draining | Stopped, Draining -> Stopped, and Stopped | Failed ->
// Starting when a rollback relaunches a retained release (the supervisor
// makes these moves).
type State string

// Release states, with the spec's names.
const (
	Starting State = "starting"
	Active   State = "active"
	Draining State = "draining"
	Stopped  State = "stopped"
	Failed   State = "failed"
)

func (s State) String() string { return string(s) }

// Live reports whether the release still has (or may have) running processes.
func (s State) Live() bool { return s == Starting || s == Active || s == Draining }
