package release

import (
	"errors"
	"testing"
)

func TestTransitionTable(t *testing.T) {
	legal := map[[2]State]bool{
		{Starting, Active}:  true,
		{Starting, Failed}:  true,
		{Starting, Canary}:  true,
		{Canary, Active}:    true,
		{Canary, Draining}:  true,
		{Canary, Stopped}:   true,
		{Active, Draining}:  true,
		{Active, Stopped}:   true,
		{Draining, Stopped}: true,
		{Stopped, Starting}: true,
		{Failed, Stopped}:   true,
	}
	// "" and "bogus" stand for any value outside the enum: never legal.
	states := []State{Starting, Canary, Active, Draining, Stopped, Failed, "", "bogus"}
	for _, from := range states {
		for _, to := range states {
			want := legal[[2]State{from, to}]
			t.Run(from.String()+"->"+to.String(), func(t *testing.T) {
				if got := from.CanBecome(to); got != want {
					t.Errorf("CanBecome: got %v, want %v", got, want)
				}
				err := Transition(from, to)
				var te *TransitionError
				switch {
				case want && err != nil:
					t.Errorf("Transition: got %v, want nil", err)
				case !want && (!errors.As(err, &te) || te.From != from || te.To != to):
					t.Errorf("Transition: got %v, want a *TransitionError from %q to %q", err, from, to)
				}
			})
		}
	}
}

func TestTransitionErrorNamesBothStates(t *testing.T) {
	err := Transition(Stopped, Active)
	if got, want := err.Error(), `illegal release state change from "stopped" to "active"`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLiveMatchesStates(t *testing.T) {
	for _, tc := range []struct {
		state State
		live  bool
	}{{Starting, true}, {Canary, true}, {Active, true}, {Draining, true}, {Stopped, false}, {Failed, false}} {
		t.Run(tc.state.String(), func(t *testing.T) {
			if got := tc.state.Live(); got != tc.live {
				t.Errorf("got %v, want %v", got, tc.live)
			}
		})
	}
}
