package smtpdtest_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// waitLimit bounds every wait of these tests.
const waitLimit = 10 * time.Second

// send delivers a short message to rcpt with net/smtp.
func send(t *testing.T, addr, rcpt string) []byte {
	t.Helper()
	msg := []byte("From: <bob@example.net>\r\nTo: <" + rcpt + ">\r\nSubject: for " + rcpt + "\r\n\r\nHello.\r\n")
	if err := smtp.SendMail(addr, nil, "bob@example.net", []string{rcpt}, msg); err != nil {
		t.Errorf("sending to %s: %v", rcpt, err)
	}
	return msg
}

func TestNewServer(t *testing.T) {
	var ts *smtpdtest.Server
	t.Run("running", func(t *testing.T) {
		ts = smtpdtest.NewServer(t)
		host, port, err := net.SplitHostPort(ts.Addr)
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("Addr = %q, want 127.0.0.1 and a port (%v)", ts.Addr, err)
		}
		if !strings.HasPrefix(ts.DataDir, os.TempDir()) {
			t.Errorf("DataDir %q is not a temporary directory (under %s)", ts.DataDir, os.TempDir())
		}
		if want := filepath.Join(ts.DataDir, "Maildir"); ts.MaildirRoot != want {
			t.Errorf("MaildirRoot = %q, want %q", ts.MaildirRoot, want)
		}
		// The Maildir root is made at the first delivery, not before.
		if _, err := os.Stat(ts.MaildirRoot); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("MaildirRoot before any message: %v, want it not made yet", err)
		}
		c, err := client.Dial(ts.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Timeout = waitLimit
		r, err := c.Greeting()
		if err != nil {
			t.Fatal(err)
		}
		if want := "220 smtpd.test ESMTP smtpd"; r.String() != want {
			t.Errorf("greeting %q, want %q (the default test hostname)", r, want)
		}
		if got := ts.SMTP.Addr(); got == nil || got.String() != ts.Addr {
			t.Errorf("SMTP.Addr() = %v, want %s", got, ts.Addr)
		}
	})
	if ts == nil {
		t.FailNow()
	}
	// The subtest's end closed the server and removed its directory.
	if err := ts.SMTP.Close(); !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("Close after the test's end = %v, want ErrServerClosed (already closed)", err)
	}
	if conn, err := net.DialTimeout("tcp", ts.Addr, waitLimit); err == nil {
		conn.SetReadDeadline(time.Now().Add(waitLimit))
		n, _ := conn.Read(make([]byte, 64))
		conn.Close()
		if n > 0 {
			t.Errorf("%s still serves after the test's end", ts.Addr)
		}
	}
	if _, err := os.Stat(ts.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("DataDir still there after the test's end: %v", err)
	}
	// Close may be called again.
	ts.Close()
}

func TestNewServerKeepsConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var (
		mu   sync.Mutex
		mine []*smtpd.Message
	)
	ts := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{
		Hostname: "given.test",
		DataDir:  dir,
		Delivered: func(m *smtpd.Message) {
			mu.Lock()
			defer mu.Unlock()
			mine = append(mine, m)
		},
	}))
	if ts.DataDir != dir || ts.MaildirRoot != filepath.Join(dir, "Maildir") {
		t.Errorf("DataDir, MaildirRoot = %q, %q; want %q and its Maildir", ts.DataDir, ts.MaildirRoot, dir)
	}
	send(t, ts.Addr, "alice@example.org")
	msgs := ts.Messages()
	mu.Lock()
	defer mu.Unlock()
	if len(msgs) != 1 || len(mine) != 1 || msgs[0] != mine[0] {
		t.Fatalf("Messages() = %v, Delivered got %v; want the same one message", msgs, mine)
	}
	if p := msgs[0].Paths; len(p) != 1 || !strings.HasPrefix(p[0], filepath.Join(dir, "Maildir", "alice", "new")+string(filepath.Separator)) {
		t.Errorf("Paths = %q, want one file in %s/Maildir/alice/new", p, dir)
	}
	stored, err := os.ReadFile(msgs[0].Paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stored), "\tby given.test (smtpd)") {
		t.Errorf("stored message does not name the given hostname:\n%s", stored)
	}
}

func TestWaitMessages(t *testing.T) {
	ts := smtpdtest.NewServer(t)
	if msgs := ts.Messages(); len(msgs) != 0 {
		t.Fatalf("Messages() = %v before any was sent", msgs)
	}
	if msgs, err := ts.WaitMessages(t.Context(), 0); err != nil || len(msgs) != 0 {
		t.Errorf("WaitMessages(0) = %v, %v; want none at once", msgs, err)
	}

	// The waiter starts before anything is sent: it must be woken by the
	// arrivals, not find them already there.
	type result struct {
		msgs []*smtpd.Message
		err  error
	}
	waited := make(chan result, 1)
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	go func() {
		msgs, err := ts.WaitMessages(ctx, 3)
		waited <- result{msgs, err}
	}()
	rcpts := []string{"a@example.org", "b@example.org", "c@example.org"}
	var wg sync.WaitGroup
	for _, rcpt := range rcpts {
		wg.Go(func() { send(t, ts.Addr, rcpt) })
	}
	res := <-waited
	wg.Wait()
	if res.err != nil {
		t.Fatal(res.err)
	}
	var got []string
	for _, m := range res.msgs {
		got = append(got, m.To...)
	}
	slices.Sort(got)
	if !slices.Equal(got, rcpts) {
		t.Errorf("WaitMessages(3) gave messages for %q, want %q", got, rcpts)
	}
	if msgs := ts.Messages(); len(msgs) != 3 {
		t.Errorf("Messages() holds %d messages, want 3", len(msgs))
	}

	// Waiting for more than will come ends with the context, and says how
	// many arrived. The short timeout is what is tested.
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	msgs, err := ts.WaitMessages(short, 5)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 of 5") {
		t.Errorf("WaitMessages(5) = %v; want an error saying 3 of 5 arrived, wrapping the deadline", err)
	}
	if len(msgs) != 3 {
		t.Errorf("WaitMessages(5) returned %d messages, want the 3 that arrived", len(msgs))
	}
	// The cause of a cancellation is kept.
	cctx, cancelCause := context.WithCancelCause(t.Context())
	giveUp := errors.New("giving up")
	cancelCause(giveUp)
	if _, err := ts.WaitMessages(cctx, 4); !errors.Is(err, giveUp) {
		t.Errorf("WaitMessages after cancel(cause) = %v, want it to wrap the cause", err)
	}
}

// TestSharedServer runs parallel subtests against one server.
func TestSharedServer(t *testing.T) {
	ts := smtpdtest.NewServer(t)
	const n = 6
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				rcpt := fmt.Sprintf("user%d@example.org", i)
				msg := send(t, ts.Addr, rcpt)
				// The message was recorded before the 250 reply.
				var mine []*smtpd.Message
				for _, m := range ts.Messages() {
					if slices.Equal(m.To, []string{rcpt}) {
						mine = append(mine, m)
					}
				}
				if len(mine) != 1 {
					t.Fatalf("Messages() holds %d messages for %s, want 1", len(mine), rcpt)
				}
				if string(mine[0].Data) != string(msg) {
					t.Errorf("Data = %q, want %q", mine[0].Data, msg)
				}
			})
		}
	})
	if msgs := ts.Messages(); len(msgs) != n {
		t.Errorf("after the subtests Messages() holds %d messages, want %d", len(msgs), n)
	}
}

// TestParallelServers gives each parallel subtest its own server.
func TestParallelServers(t *testing.T) {
	var (
		mu    sync.Mutex
		addrs = make(map[string]bool)
		dirs  = make(map[string]bool)
	)
	const n = 4
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				ts := smtpdtest.NewServer(t)
				mu.Lock()
				addrs[ts.Addr], dirs[ts.DataDir] = true, true
				mu.Unlock()
				rcpt := fmt.Sprintf("only%d@example.org", i)
				send(t, ts.Addr, rcpt)
				ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
				defer cancel()
				msgs, err := ts.WaitMessages(ctx, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{rcpt}) {
					t.Errorf("this server's messages: %d, first for %q; want only the one for %s", len(msgs), msgs[0].To, rcpt)
				}
				entries, err := os.ReadDir(ts.MaildirRoot)
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) != 1 || entries[0].Name() != fmt.Sprintf("only%d", i) {
					t.Errorf("this server's Maildir holds %v, want only only%d", entries, i)
				}
			})
		}
	})
	if len(addrs) != n || len(dirs) != n {
		t.Errorf("%d servers had %d addresses and %d data directories, want all distinct", n, len(addrs), len(dirs))
	}
}
