package release

// State is where a release is in its life. The legal moves are
// Starting -> Active | Failed, Active -> Draining | Stopped,
// Draining -> Stopped, and Stopped | Failed -> Starting (rollback restarts a
// retained release).
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

var transitions = map[State][]State{
	Starting: {Active, Failed},
	Active:   {Draining, Stopped},
	Draining: {Stopped},
	Stopped:  {Starting},
	Failed:   {Starting},
}

// CanMove reports whether a release may go from s to next.
func (s State) CanMove(next State) bool {
	for _, t := range transitions[s] {
		if t == next {
			return true
		}
	}
	return false
}

// Live reports whether the release still has (or may have) running processes.
func (s State) Live() bool { return s == Starting || s == Active || s == Draining }
