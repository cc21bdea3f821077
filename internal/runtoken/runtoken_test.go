package runtoken

import "testing"

func TestTokens(t *testing.T) {
	inst := NewInstance()
	if !Valid(inst) || NewInstance() == inst {
		t.Fatalf("instance %q: not valid, or not random", inst)
	}
	a, b := New(inst), New(inst)
	if a == b || Instance(a) != inst || Instance(b) != inst {
		t.Errorf("runs %q, %q of %q: want distinct tokens with the instance in front", a, b, inst)
	}
	if alone := New(""); Instance(alone) != "" || alone == "" {
		t.Errorf("a run without an instance: %q names instance %q", alone, Instance(alone))
	}
	for _, bad := range []string{"", "abc", inst + "0", inst[:23] + "g", "." + inst[1:]} {
		if Valid(bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
}
