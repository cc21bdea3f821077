package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// observed collects what an Observer hears.
type observed struct {
	mu      sync.Mutex
	asked   []string // "release addr", one per Observe call
	results []string // "release method path status bytes"
}

func (o *observed) observe(releaseID, addr string) Observer {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.asked = append(o.asked, releaseID+" "+addr)
	return observerFunc(func(r *http.Request, res Result) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.results = append(o.results, strings.Join([]string{releaseID, r.Method, r.URL.Path, strconv.Itoa(res.Status), strconv.FormatInt(res.Bytes, 10)}, " "))
		if res.Duration < 0 || res.Start.IsZero() {
			o.results = append(o.results, "bad timing")
		}
	})
}

type observerFunc func(*http.Request, Result)

func (f observerFunc) RequestDone(r *http.Request, res Result) { f(r, res) }

// Options.Observe is asked once per backend, and its Observer hears each
// plain request with the status and body size the client got — the app's
// answers on both forwarding paths, and the proxy's own 502.
func TestObserverHearsEveryRequest(t *testing.T) {
	obs := &observed{}
	p := New(Options{Observe: obs.observe})
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	_, addr := upstream(t, "", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r) // "404 page not found\n": 19 bytes
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "hello") // 5 bytes
	})
	c := newClient(t)
	b := activate(p, "v1", addr)
	get(t, c, srv.URL+"/a")
	get(t, c, srv.URL+"/missing")
	res, err := c.Post(srv.URL+"/up", "text/plain", strings.NewReader("body")) // ReverseProxy's path
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	p.Swap(b) // a second Swap of the same backend asks nothing
	activate(p, "v2", closedAddr(t))
	get(t, c, srv.URL+"/down")

	obs.mu.Lock()
	defer obs.mu.Unlock()
	wantAsked := []string{"v1 " + addr, "v2 " + obs.asked[len(obs.asked)-1][3:]}
	if strings.Join(obs.asked, ",") != strings.Join(wantAsked, ",") {
		t.Errorf("Observe asked for %q, want %q", obs.asked, wantAsked)
	}
	want := []string{"v1 GET /a 200 5", "v1 GET /missing 404 19", "v1 POST /up 200 5", "v2 GET /down 502 12"}
	if strings.Join(obs.results, "\n") != strings.Join(want, "\n") {
		t.Errorf("observed:\n%s\nwant:\n%s", strings.Join(obs.results, "\n"), strings.Join(want, "\n"))
	}
}
