package smtpd

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/internal/openfiles"
)

// openFiles counts the file descriptors this process has open, or returns
// -1 if it cannot.
func openFiles() int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(fds)
}

// TestMessagesInFlightHoldFewFiles checks that a message being received,
// and then committed, holds a fixed number of files whatever its number of
// recipients: many sessions sending to many mailboxes each must not take
// the server to its open-file limit. The directories the store keeps open
// are bounded by its cache, however many mailboxes there are.
func TestMessagesInFlightHoldFewFiles(t *testing.T) {
	if openFiles() < 0 {
		t.Skip("no /proc/self/fd to count open files")
	}
	const sessions, rcpts = 16, 50 // 800 mailboxes
	srv, err := NewServer(Config{Hostname: "mx.test", DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// When the commits come, the first batch's data flush waits until
	// every other delivery has queued behind it: all of them are in
	// commit at once, and their files are counted then.
	var inCommit atomic.Int64
	inCommit.Store(-1)
	srv.store.group.beforeFlush = holdFirstFlush(&srv.store.group, sessions-1, func() { inCommit.Store(int64(openFiles())) })
	before, conns := startMessages(t, srv, sessions, rcpts)
	inData := openFiles()

	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			if r, err := c.Cmd("."); err != nil || r.Code != 250 {
				t.Errorf("session %d: end of data: %v %v", i, r, err)
			}
		})
	}
	wg.Wait()

	// Each session: the client's socket, and what the server holds for
	// it; then the cache of mailbox directories.
	budget := before + sessions*(1+openfiles.PerSession) + 2*min(sessions*rcpts, openfiles.Mailboxes) + 16
	if inData > budget {
		t.Errorf("%d sessions with %d recipients each in DATA: %d files open, want at most %d", sessions, rcpts, inData, budget)
	}
	switch n := int(inCommit.Load()); {
	case n < 0:
		t.Error("the deliveries were not committed in one batch")
	case n > budget:
		t.Errorf("%d sessions with %d recipients each in commit: %d files open, want at most %d", sessions, rcpts, n, budget)
	}
	t.Logf("files open: %d before, %d in DATA, %d in commit, budget %d", before, inData, inCommit.Load(), budget)
}

// startMessages serves srv on a loopback port and opens sessions that each
// leave a message to rcpts mailboxes of their own in DATA (startMessage).
// It returns how many files were open before, and the clients.
func startMessages(t *testing.T, srv *Server, sessions, rcpts int) (int, []*client.Client) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	before := openFiles()
	conns := make([]*client.Client, sessions)
	for i := range conns {
		conns[i] = startMessage(t, l.Addr().String(), i, rcpts)
		t.Cleanup(func() { conns[i].Close() })
	}
	return before, conns
}

// startMessage opens a session that sends a message to rcpts mailboxes of
// its own, and leaves it in DATA with part of the message sent.
func startMessage(t *testing.T, addr string, session, rcpts int) *client.Client {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 10 * time.Second
	expect := func(r *client.Reply, err error, code int) {
		t.Helper()
		if err != nil || r.Code != code {
			t.Fatalf("session %d: got %v %v, want %d", session, r, err, code)
		}
	}
	r, err := c.Greeting()
	expect(r, err, 220)
	r, err = c.Hello("client.test")
	expect(r, err, 250)
	r, err = c.Mail("bob@example.net")
	expect(r, err, 250)
	for i := range rcpts {
		r, err = c.Rcpt(fmt.Sprintf("s%dr%d@example.org", session, i))
		expect(r, err, 250)
	}
	r, err = c.Cmd("DATA")
	expect(r, err, 354)
	if err := c.Send("Subject: in flight", "", "part of the body"); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFilterRunsHoldFewFiles checks what a session holds while a content
// filter runs, against what the smtpd command counts when it fits its
// sessions under the open-file limit.
func TestFilterRunsHoldFewFiles(t *testing.T) {
	if openFiles() < 0 {
		t.Skip("no /proc/self/fd to count open files")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to run a filter")
	}
	// Each filter copies the message, says it is running, and waits
	// until the test opens the FIFO go (and closes it).
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "go"), 0o600); err != nil {
		t.Skip("no FIFO:", err)
	}
	script := `cat; : > "$0/ready.$SMTPD_QUEUE_ID"; read x < "$0/go"; exit 0`
	const sessions, rcpts = 8, 3
	srv, err := NewServer(Config{
		Hostname: "mx.test",
		DataDir:  t.TempDir(),
		Logger:   slog.New(slog.DiscardHandler),
		Filter:   CommandFilter{Args: []string{"sh", "-c", script, dir}},
	})
	if err != nil {
		t.Fatal(err)
	}
	before, conns := startMessages(t, srv, sessions, rcpts)
	replies := make(chan error, sessions)
	for _, c := range conns {
		go func() {
			r, err := c.Cmd(".")
			if err == nil && r.Code != 250 {
				err = r
			}
			replies <- err
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ready, _ := filepath.Glob(filepath.Join(dir, "ready.*"))
		if len(ready) == sessions {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d filters started", len(ready), sessions)
		}
	}
	running := openFiles()
	release, err := os.OpenFile(filepath.Join(dir, "go"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	release.Close()
	for range sessions {
		if err := <-replies; err != nil {
			t.Errorf("end of data: %v", err)
		}
	}
	budget := before + sessions*(1+openfiles.PerSession+openfiles.PerFilterRun) + 2*sessions*rcpts + 16
	if running > budget {
		t.Errorf("%d filters running: %d files open, want at most %d", sessions, running, budget)
	}
	t.Logf("files open: %d before, %d while %d filters run, budget %d", before, running, sessions, budget)
}
