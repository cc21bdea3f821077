package control

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecodeRequest: arbitrary input never panics, always yields either a
// valid request or an *Error, and a decoded request re-encodes to an
// equivalent one.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"command":"deploy","releasePath":"/srv/r","releaseId":"v1","revision":"abc"}`,
		`{"command":"status"}`, `{"command":"events","limit":5}`, `{"command":"restart","process":"worker#0"}`,
		`{"command":`, `[]`, `null`, `{"command":"logs","process":1}`, "{\"command\":\"stop\"}\n",
		`{"command":"restart","processId":"worker","policy":"companion","extra":[1,2]}`,
		`{"command":"deploy","releasePath":"/r","progress":true}`, `{"command":"events","limit":2.5}`,
		`{"command":"deployCanary","releasePath":"/r","percent":10}`, `{"command":"rolloutSet","percent":0.125}`,
		`{"command":"rolloutSet","percent":"10"}`, `{"command":"rolloutPromote","progress":true}`, `{"command":"rolloutAbort"}`,

		`{"command":"pause","timeoutMs":60000,"drain":true}`, `{"command":"resume"}`, `{"command":"pause","timeoutMs":1.5}`,
		`{"command":"maintenance","state":"on","message":"back <soon>","page":"<h1>x</h1>"}`, `{"command":"maintenance"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == "" || e.Message == "" {
				t.Fatalf("error %v is not a coded *Error", err)
			}
			return
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeRequest(b)
		if err != nil {
			t.Fatalf("re-encoded request %s does not decode: %v", b, err)
		}
		if *again != *req {
			t.Fatalf("round trip changed %+v into %+v", req, again)
		}
	})
}
