package systemd

import (
	"errors"
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// storeMessage is one datagram the fd store sent: its text and the
// descriptors it carried.
type storeMessage struct {
	text string
	fds  []int
}

// fdNotifySocket listens on a unixgram NOTIFY_SOCKET, as systemd does, and
// returns each datagram with the descriptors passed in it.
func fdNotifySocket(t *testing.T) <-chan storeMessage {
	t.Helper()
	conn := listenNotify(t)
	ch := make(chan storeMessage, 64)
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, 1024)
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				close(ch)
				return
			}
			m := storeMessage{text: string(buf[:n])}
			if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, c := range cmsgs {
					fds, _ := unix.ParseUnixRights(&c)
					m.fds = append(m.fds, fds...)
				}
			}
			ch <- m
		}
	}()
	return ch
}

func TestFDStore(t *testing.T) {
	msgs := fdNotifySocket(t)
	s, err := NewFDStore(3, []string{"ws.old"})
	if err != nil || s == nil {
		t.Fatalf("NewFDStore: %v, %v", s, err)
	}
	defer s.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := s.Store([]string{"ws.a.r", "ws.a.w"}, []*os.File{r, w}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ws.a.r", "ws.a.w"} {
		m := <-msgs
		if m.text != "FDSTORE=1\nFDNAME="+name || len(m.fds) != 1 {
			t.Fatalf("got %q with %d fds, want FDSTORE=1 FDNAME=%s with one", m.text, len(m.fds), name)
		}
		if name == "ws.a.w" { // the descriptor is the pipe's: bytes written to it reach r
			if _, err := unix.Write(m.fds[0], []byte("x")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			if n, err := r.Read(b); n != 1 || err != nil || b[0] != 'x' {
				t.Errorf("read %d %v", n, err)
			}
		}
		_ = unix.Close(m.fds[0])
	}
	// 3 stored of 3: no room, and nothing is sent.
	if err := s.Store([]string{"ws.b.r"}, []*os.File{r}); !errors.Is(err, ErrFDStoreFull) {
		t.Errorf("Store beyond FileDescriptorStoreMax: %v, want ErrFDStoreFull", err)
	}
	s.Remove([]string{"ws.a.r"})
	if m := <-msgs; m.text != "FDSTOREREMOVE=1\nFDNAME=ws.a.r" || len(m.fds) != 0 {
		t.Errorf("remove: %q", m.text)
	}
	if s.Len() != 2 {
		t.Errorf("Len %d, want 2", s.Len())
	}
	s.RemoveAll()
	var removed []string
	for range 2 {
		removed = append(removed, (<-msgs).text)
	}
	slices.Sort(removed)
	if want := []string{"FDSTOREREMOVE=1\nFDNAME=ws.a.w", "FDSTOREREMOVE=1\nFDNAME=ws.old"}; !slices.Equal(removed, want) {
		t.Errorf("RemoveAll sent %q, want %q", removed, want)
	}
	if s.Len() != 0 {
		t.Errorf("Len %d after RemoveAll", s.Len())
	}
}

func TestFDStoreWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if s, err := NewFDStore(10, nil); s != nil || err != nil {
		t.Errorf("got %v, %v; want no store", s, err)
	}
}
