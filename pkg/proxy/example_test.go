package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/proxy"
)

// A deploy as the supervisor runs it: put the new release in front, drain
// the old one for at most the drain timeout, then cut what is left.
func Example() {
	v1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "v1") }))
	defer v1.Close()
	v2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "v2") }))
	defer v2.Close()

	p := proxy.New(proxy.Options{})
	defer p.Close()
	front := httptest.NewServer(p) // rollbridged serves p on the stable proxy port
	defer front.Close()

	p.Swap(proxy.NewBackend("v1", v1.Listener.Addr().String()))
	fmt.Println(fetch(front.URL))

	prev := p.Swap(proxy.NewBackend("v2", v2.Listener.Addr().String()))
	fmt.Println(fetch(front.URL))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // proxy.drainTimeoutMs
	defer cancel()
	err := prev.Drain(ctx)
	prev.CloseConnections() // WebSockets still open after a timeout are cut here
	fmt.Println("drained", prev.ReleaseID(), err)
	// Output:
	// v1
	// v2
	// drained v1 <nil>
}

func fetch(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
