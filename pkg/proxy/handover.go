package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// FDStore keeps file descriptors open beyond this process, under names,
// for the next daemon (systemd's fd store; pkg/systemd implements it).
// Methods are called from many goroutines at once.
type FDStore interface {
	// Store keeps files (one per name, same order) all or none; an error
	// means none is kept, and the connection is then copied in-process as
	// without a store. The caller keeps its own files and closes them.
	Store(names []string, files []*os.File) error
	// Remove makes the store close and forget its copies of names.
	Remove(names []string)
}

// handover is the Proxy's part in parking upgraded connections: where they
// are stored, the stop that parks them (Park), and the copies running.
type handover struct {
	store  FDStore
	park   context.Context
	parkFn context.CancelFunc
	wg     sync.WaitGroup
}

func newHandover(store FDStore) *handover {
	if store == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &handover{store: store, park: ctx, parkFn: cancel}
}

// Park stops copying every spliced (handed-over) connection and waits for
// the copies to return, leaving the connections open in the FDStore for
// the next daemon: a daemon restart. Connections still in their handshake,
// and those copied in-process (no store, or the store refused them), are
// not parked; CloseConnections or the process's exit ends them. Park does
// nothing without Options.FDStore. After Park, new upgrades are copied
// in-process.
func (p *Proxy) Park() {
	if p.handover == nil {
		return
	}
	p.handover.parkFn()
	p.handover.wg.Wait()
}

// ParkedConn is an upgraded connection a previous daemon left in the fd
// store, pinned to the release ReleaseID. Resume it on that release's
// backend, or Close it.
type ParkedConn struct {
	ReleaseID string
	pair      *splicePair
	names     []string // every name it was found under, for Close
}

// ParkedConns sorts files by name (as LISTEN_FDNAMES gave them; f.Name())
// into the connections a previous daemon parked ("ws.RELEASE.CONN.ROLE")
// and the rest, which are returned untouched. A connection missing one of
// its six descriptors cannot be resumed: it is returned in broken, to be
// closed. Files must be non-blocking, as a previous daemon stored them.
func ParkedConns(files []*os.File) (conns, broken []*ParkedConn, rest []*os.File) {
	byConn := map[string]*ParkedConn{}
	var order []string
	for _, f := range files {
		rel, conn, role, ok := parseStoreName(f.Name())
		if !ok {
			rest = append(rest, f)
			continue
		}
		key := rel + "." + conn
		c := byConn[key]
		if c == nil {
			c = &ParkedConn{ReleaseID: rel, pair: &splicePair{releaseID: rel, connID: conn}}
			byConn[key] = c
			order = append(order, key)
		}
		slot := c.pair.slot(role)
		if *slot != nil {
			_ = f.Close() // a duplicate name: keep the first
			continue
		}
		*slot = f
		c.names = append(c.names, f.Name())
	}
	for _, k := range order {
		c := byConn[k]
		if len(c.names) == len(spliceRoles) {
			conns = append(conns, c)
		} else {
			broken = append(broken, c)
		}
	}
	return conns, broken, rest
}

// Close closes c's descriptors and removes them from store (nil: only
// closes): the connection ends on both sides.
func (c *ParkedConn) Close(store FDStore) {
	if store != nil {
		store.Remove(c.names)
	}
	c.pair.close()
}

// Resume copies c again on b, the backend of c's release, and counts it
// there as an open WebSocket until it ends (Connections, Drain);
// b.CloseConnections closes it, Park parks it again. Whatever the previous
// daemon left in c's pipes goes out first. b must have been swapped into
// p. Without Options.FDStore, Resume closes c.
func (p *Proxy) Resume(b *Backend, c *ParkedConn) {
	h := p.handover
	if h == nil || h.park.Err() != nil {
		c.Close(nil)
		return
	}
	b.ws.Add(1)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer b.done(&b.ws)
		b.splice(b.kill, h, c.pair)
	}()
}

// slot is where the descriptor of role goes; roles are spliceRoles.
func (p *splicePair) slot(role string) **os.File {
	switch role {
	case "c":
		return &p.client
	case "a":
		return &p.app
	case "ur":
		return &p.upR
	case "uw":
		return &p.upW
	case "dr":
		return &p.downR
	default: // "dw", checked by parseStoreName
		return &p.downW
	}
}

// parseStoreName splits "ws.RELEASE.CONN.ROLE"; the release may contain
// dots, the connection id and the role may not.
func parseStoreName(name string) (releaseID, connID, role string, ok bool) {
	rest, found := strings.CutPrefix(name, "ws.")
	if !found {
		return "", "", "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return "", "", "", false
	}
	rest, role = rest[:i], rest[i+1:]
	j := strings.LastIndexByte(rest, '.')
	if j <= 0 {
		return "", "", "", false
	}
	releaseID, connID = rest[:j], rest[j+1:]
	known := false
	for _, r := range spliceRoles {
		known = known || r == role
	}
	return releaseID, connID, role, known && connID != ""
}

// handOver parks a freshly upgraded connection in the fd store and copies
// it with splice until it ends, is killed (ctx) or parked. It returns
// false, having changed nothing but the buffered bytes (written out and
// discarded), when the connection cannot be stored; the caller then copies
// it in-process.
//
// The bytes bufio read past the handshake on either side are written to
// the other side first: from then on every byte of the connection is in a
// kernel buffer, and storing the descriptors makes it survive the process.
func (b *Backend) handOver(ctx context.Context, h *handover, client net.Conn, clientBuf *bufio.Reader, app net.Conn, appBuf *bufio.Reader) bool {
	if err := flushBuffered(app, clientBuf); err != nil {
		return false
	}
	if err := flushBuffered(client, appBuf); err != nil {
		return false
	}
	if h.park.Err() != nil {
		return false
	}
	p, err := newSplicePair(b.releaseID, client, app)
	if err != nil {
		return false
	}
	if err := h.store.Store(p.names(), p.fileSlice()); err != nil {
		p.close()
		return false
	}
	// The pair has descriptors of its own (dups): ours for the net.Conns
	// are closed now, which ends nothing while the pair's are open.
	_ = client.Close()
	_ = app.Close()
	h.wg.Add(1)
	defer h.wg.Done()
	b.splice(ctx, h, p)
	return true
}

// flushBuffered writes what r has buffered to w and discards it from r.
func flushBuffered(w net.Conn, r *bufio.Reader) error {
	n := r.Buffered()
	if n == 0 {
		return nil
	}
	early, _ := r.Peek(n) // cannot fail for Buffered() bytes
	if _, err := w.Write(early); err != nil {
		return err
	}
	_, _ = r.Discard(n) // cannot fail for Buffered() bytes
	return nil
}

func newSplicePair(releaseID string, client, app net.Conn) (*splicePair, error) {
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	p := &splicePair{releaseID: releaseID, connID: hex.EncodeToString(id[:])}
	var err error
	if p.client, err = fileOf(client); err != nil {
		return nil, err
	}
	if p.app, err = fileOf(app); err != nil {
		p.close()
		return nil, err
	}
	if p.upR, p.upW, err = newPipe(); err != nil {
		p.close()
		return nil, err
	}
	if p.downR, p.downW, err = newPipe(); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// aLongTimeAgo is a deadline that has passed: setting it wakes a copy
// waiting in the poller, whatever it waits for.
var aLongTimeAgo = time.Unix(1, 0)

// splice copies p both ways until either direction ends or fails (the
// connection is over: both sides are closed and its descriptors removed
// from the store), ctx ends (killed: the same), or h parks it (its
// descriptors stay in the store; only this process's are closed). One
// direction runs on the caller's goroutine.
func (b *Backend) splice(ctx context.Context, h *handover, p *splicePair) {
	defer p.close()
	up, uerr := newDirection(p.client, p.upR, p.upW, p.app)
	down, derr := newDirection(p.app, p.downR, p.downW, p.client)
	if err := errors.Join(uerr, derr); err != nil {
		if h.park.Err() == nil {
			h.store.Remove(p.names())
		}
		return
	}
	// Stopping never closes a file under a running direction (it splices
	// by descriptor number): a deadline in the past wakes both, and the
	// files are closed once both returned.
	interrupt := func() {
		_ = p.client.SetDeadline(aLongTimeAgo)
		_ = p.app.SetDeadline(aLongTimeAgo)
	}
	stopKill := context.AfterFunc(ctx, interrupt)
	defer stopKill()
	stopPark := context.AfterFunc(h.park, interrupt)
	defer stopPark()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = down.run() // how it ended does not matter: either way the pair ends
		interrupt()
	}()
	_ = up.run()
	interrupt()
	<-done
	if h.park.Err() != nil && ctx.Err() == nil {
		// Parked: whatever ended it (a deadline, or even the connection's
		// end), the next daemon finds the same descriptors and the same
		// end again, and settles it.
		return
	}
	h.store.Remove(p.names())
}
