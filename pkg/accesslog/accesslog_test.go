package accesslog

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collected gathers what Write receives.
type collected struct {
	mu      sync.Mutex
	entries []Entry
}

func (c *collected) write(e Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = append(c.entries, e)
}

func (c *collected) all() []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Entry(nil), c.entries...)
}

// setup serves a real proxy, with l observing, in front of an app that
// answers /missing with 404, /slow after 400 ms, anything else with "ok".
// It returns the proxy's URL and the app's address.
func setup(t *testing.T, l *Log, release string) (string, string) {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		case "/slow":
			time.Sleep(400 * time.Millisecond)
			_, _ = io.WriteString(w, "slow")
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(app.Close)
	p := proxy.New(proxy.Options{Observe: l.Observe})
	front := httptest.NewServer(p)
	t.Cleanup(func() {
		front.Close()
		p.Close()
	})
	p.Swap(proxy.NewBackend(release, app.Listener.Addr().String()))
	return front.URL, app.Listener.Addr().String()
}

func get(t *testing.T, c *http.Client, url string) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
}

func client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// Every request is one entry with its method, host, path (no query),
// status, size, release, upstream and client.
func TestEntriesMatchRequests(t *testing.T) {
	var got collected
	l := New(Options{Sample: 1, Write: got.write})
	url, upstream := setup(t, l, "v7")
	c := client(t)
	for range 5 {
		get(t, c, url+"/a?token=secret")
	}
	get(t, c, url+"/missing")
	l.Close()
	es := got.all()
	if len(es) != 6 {
		t.Fatalf("%d entries, want 6", len(es))
	}
	for i, e := range es {
		wantPath, wantStatus, wantBytes := "/a", 200, int64(2)
		if i == 5 {
			wantPath, wantStatus, wantBytes = "/missing", 404, 19
		}
		host := strings.TrimPrefix(url, "http://")
		if e.Method != "GET" || e.Host != host || e.Path != wantPath || e.Status != wantStatus || e.Bytes != wantBytes ||
			e.Release != "v7" || e.Upstream != upstream || e.Client != "127.0.0.1" || e.Duration <= 0 || e.Time.IsZero() {
			t.Errorf("entry %d: %+v; want GET %s%s %d %dB release v7 upstream %s client 127.0.0.1", i, e, host, wantPath, wantStatus, wantBytes, upstream)
		}
	}
	if l.Dropped() != 0 || l.Written() != 6 {
		t.Errorf("dropped %d, written %d; want 0 and 6", l.Dropped(), l.Written())
	}
}

// Sample 0.25 writes every 4th request; with Sample 0 only the requests
// at least Slow long are written, and with sampling they are written too.
func TestSamplingAndSlowThreshold(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sample     float64
		threshold  time.Duration
		fast, slow int // requests of each kind
		want       int // entries
		wantSlow   int // of them /slow
	}{
		{name: "every 4th", sample: 0.25, fast: 40, want: 10},
		{name: "only slow", sample: 0, threshold: 200 * time.Millisecond, fast: 20, slow: 2, want: 2, wantSlow: 2},
		{name: "sampled and slow", sample: 0.1, threshold: 200 * time.Millisecond, fast: 20, slow: 1, want: 3, wantSlow: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got collected
			l := New(Options{Sample: tc.sample, Slow: tc.threshold, Write: got.write})
			url, _ := setup(t, l, "v1")
			c := client(t)
			for range tc.fast {
				get(t, c, url+"/fast")
			}
			for range tc.slow {
				get(t, c, url+"/slow")
			}
			l.Close()
			es := got.all()
			slow := 0
			for _, e := range es {
				if e.Path == "/slow" {
					slow++
				}
			}
			if len(es) != tc.want || slow != tc.wantSlow {
				t.Errorf("%d entries (%d slow), want %d (%d slow)", len(es), slow, tc.want, tc.wantSlow)
			}
		})
	}
}

// A writer that does not return (a stalled journal) costs requests
// nothing: they complete, the queue fills, and what does not fit is
// dropped and counted.
func TestBlockedWriterDropsAndCounts(t *testing.T) {
	const queue = 8
	entered := make(chan struct{})
	unblock := make(chan struct{})
	var got collected
	var once sync.Once
	l := New(Options{Sample: 1, Queue: queue, Write: func(e Entry) {
		once.Do(func() {
			close(entered)
			<-unblock // the first entry blocks the writer
		})
		got.write(e)
	}})
	url, _ := setup(t, l, "v1")
	c := client(t)
	get(t, c, url+"/first")
	<-entered // the writer holds the first entry and is stuck
	const more = queue + 5
	for range more {
		get(t, c, url+"/more") // each returns although nothing is written
	}
	if d := l.Dropped(); d != 5 {
		t.Errorf("dropped %d, want 5 (queue %d full)", d, queue)
	}
	close(unblock)
	l.Close()
	if n := len(got.all()); n != 1+queue {
		t.Errorf("written %d, want %d", n, 1+queue)
	}
}

// JSON lines carry every field, camelCase, one object per line.
func TestJSONLines(t *testing.T) {
	var b bytes.Buffer
	at := time.Date(2026, 6, 1, 10, 0, 5, 120e6, time.UTC)
	JSONLines(&b)(Entry{Time: at, Method: "POST", Host: "h", Path: "/p", Status: 502, Bytes: 12, Duration: 1500 * time.Microsecond,
		Release: "v2", Upstream: "127.0.0.1:18000", Client: "10.0.0.1", Peer: "127.0.0.1:5000"})
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"at": "2026-06-01T10:00:05.120Z", "type": "access", "method": "POST", "host": "h", "path": "/p", "status": 502.0,
		"bytes": 12.0, "durationMs": 1.5, "releaseId": "v2", "upstream": "127.0.0.1:18000", "client": "10.0.0.1", "peer": "127.0.0.1:5000"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if len(m) != len(want) {
		t.Errorf("fields %v, want %v", m, want)
	}
}
