package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd/client"
)

// TestDurabilityAfterSIGKILL kills the real smtpd process with SIGKILL in the
// middle of heavy traffic and checks the promise of the README (250 only once
// every copy is durable) on what it left behind: every message that got 250
// is in new/ of each of its recipients' mailboxes exactly once and whole, and
// nothing partial is in new/ at all. Messages that were complete but not yet
// acknowledged may be there too: delivery is at least once. tmp/ may keep
// partial files of the transactions the kill interrupted; they are counted,
// not failed.
//
// SIGKILL does not drop the page cache: what was written before the kill
// is still read back after it, fsynced or not. So this test checks the
// order of the steps — write the file, make it appear in new/ (a link or
// a rename), answer 250 only after that — and that the appearance is
// atomic; it cannot tell whether the fsyncs are there, which only a power
// cut (or a fault-injecting file system) would show. It runs with -no-sync
// too, which keeps that promise for a crash of the server.
func TestDurabilityAfterSIGKILL(t *testing.T) {
	t.Run("fsync", func(t *testing.T) { testSIGKILL(t, false) })
	t.Run("no-sync", func(t *testing.T) { testSIGKILL(t, true) })
}

func testSIGKILL(t *testing.T, noSync bool) {
	clients, target := 32, 200
	if testing.Short() {
		clients, target = 8, 40
	}
	dir := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(), "NO_COLOR=1"}
	args := []string{"-d", "data", "-hostname", "mx.test", "-M", "-1", "-metrics-http", "127.0.0.1:0"}
	if noSync {
		args = append(args, "-no-sync")
	}
	p := startSmtpdForTest(t, dir, env, args...)

	// The traffic: each client sends message after message on one
	// session until the server dies. Each message carries a token; the
	// tokens whose DATA got 250 are recorded as acknowledged.
	var (
		mu        sync.Mutex
		attempted = make(map[string][]string) // token → recipients; DATA was sent
		acked     = make(map[string]bool)
		clientErr []string // errors that came before the kill
		killed    atomic.Bool
		reached   = make(chan struct{})
		once      sync.Once
		wg        sync.WaitGroup
	)
	// Time bounds: at most 12 s of traffic (it takes 1–2 s here), 10 s
	// for the restart (startSmtpd) and 5 s for the final stop, so the
	// test ends within 30 s whatever happens.
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Second)
	defer cancel()
	fail := func(i int, what string, err error) {
		if killed.Load() {
			return // expected: the server is gone
		}
		mu.Lock()
		defer mu.Unlock()
		clientErr = append(clientErr, fmt.Sprintf("client %d: %s: %v", i, what, err))
	}
	for i := range clients {
		wg.Go(func() {
			c, err := client.Dial(p.addr)
			if err != nil {
				fail(i, "dial", err)
				return
			}
			defer c.Close()
			c.Timeout = 10 * time.Second
			if _, err := c.Greeting(); err != nil {
				fail(i, "greeting", err)
				return
			}
			if _, err := c.Hello(fmt.Sprintf("client%02d.test", i)); err != nil {
				fail(i, "EHLO", err)
				return
			}
			for n := 0; ctx.Err() == nil; n++ {
				token := fmt.Sprintf("c%02dm%05d", i, n)
				rcpts := durabilityRecipients(i, n)
				if _, err := c.Mail(durabilitySender); err != nil {
					fail(i, "MAIL", err)
					return
				}
				for _, rcpt := range rcpts {
					if _, err := c.Rcpt(rcpt); err != nil {
						fail(i, "RCPT", err)
						return
					}
				}
				mu.Lock()
				attempted[token] = rcpts
				mu.Unlock()
				r, err := c.Data(durabilityMessage(token, rcpts))
				if err != nil {
					fail(i, "DATA "+token, err)
					return
				}
				if r.Code != 250 {
					fail(i, "DATA "+token, r)
					return
				}
				mu.Lock()
				acked[token] = true
				if len(acked) >= target {
					once.Do(func() { close(reached) })
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-reached:
	case <-ctx.Done():
	}
	if p.exited() {
		t.Errorf("smtpd exited on its own during the traffic: %v\nstderr:\n%s", p.Err(), p.stderr.bytes())
	}
	// The kill comes while group commit is at work: the messages stored
	// so far shared their flushes to disk. With -no-sync nothing was
	// flushed: there were no batches.
	m := scrape(t, p.httpAddr)
	accepted, batches := m[`smtpd_messages_total{result="accepted"}`], m["smtpd_commit_batches_total"]
	switch {
	case noSync && batches != 0:
		t.Errorf("before the kill, with -no-sync: %v messages stored in %v flushed batches; want none", accepted, batches)
	case !noSync && (batches == 0 || batches >= accepted):
		t.Errorf("before the kill: %v messages stored in %v batches; want batches shared by several messages", accepted, batches)
	}
	killed.Store(true)
	p.kill() // SIGKILL, and wait for the process to be gone
	wg.Wait()
	cancel()
	mu.Lock()
	defer mu.Unlock()
	for _, e := range clientErr {
		t.Error(e)
	}
	if len(acked) < target {
		t.Fatalf("only %d messages acknowledged before the time ran out, want %d", len(acked), target)
	}

	// The server starts again on the same data directory.
	p2, err := startSmtpd(dir, env, args...)
	if err != nil {
		t.Fatalf("smtpd does not restart after SIGKILL: %v", err)
	}
	t.Cleanup(func() {
		if !p2.exited() {
			p2.kill()
		}
	})

	// found[token][mailbox] counts the complete copies in new/.
	root := filepath.Join(dir, "data", "Maildir")
	found := make(map[string]map[string]int)
	var inNew, tmpFiles int
	boxes, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, box := range boxes {
		names, err := os.ReadDir(filepath.Join(root, box.Name(), "new"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range names {
			inNew++
			path := filepath.Join(root, box.Name(), "new", e.Name())
			token, err := checkDurableFile(path, attempted)
			if err != nil {
				t.Errorf("%s: %v", path, err)
				continue
			}
			if found[token] == nil {
				found[token] = make(map[string]int)
			}
			found[token][box.Name()]++
		}
		tmp, err := os.ReadDir(filepath.Join(root, box.Name(), "tmp"))
		if err != nil {
			t.Fatal(err)
		}
		tmpFiles += len(tmp)
	}
	for token, perBox := range found {
		for box, n := range perBox {
			if n != 1 {
				t.Errorf("token %s: %d copies in %s/new, want 1", token, n, box)
			}
		}
	}
	for token := range acked {
		for _, rcpt := range attempted[token] {
			box := rcpt[:strings.IndexByte(rcpt, '@')]
			if found[token][box] != 1 {
				t.Errorf("acknowledged message %s: %d complete copies in %s/new, want 1", token, found[token][box], box)
			}
		}
	}
	unacked := 0
	for token := range found {
		if !acked[token] {
			unacked++
		}
	}
	t.Logf("%d clients; %d messages sent, %d acknowledged before SIGKILL (%v commit batches); %d files in new/ "+
		"(%d messages without 250, complete: at least once); %d partial files left in tmp/",
		clients, len(attempted), len(acked), batches, inNew, unacked, tmpFiles)

	// The restarted server serves and stops cleanly.
	c, err := client.Dial(p2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Timeout = 10 * time.Second
	if _, err := c.Greeting(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Hello("after.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Mail(durabilitySender); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rcpt("after@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Data(durabilityMessage("after", []string{"after@example.org"})); err != nil {
		t.Fatalf("the restarted server did not take a message: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if err := p2.stop(syscall.SIGTERM, 5*time.Second); err != nil {
		t.Errorf("restarted smtpd: %v\nstderr:\n%s", err, p2.stderr.bytes())
	}
}

const durabilitySender = "sender@example.net"

// durabilityRecipients spreads the messages over eight mailboxes; every
// fifth message also goes to a shared one, so that deliveries to two
// mailboxes are interrupted too.
func durabilityRecipients(client, n int) []string {
	rcpts := []string{fmt.Sprintf("box%d@example.org", client%8)}
	if n%5 == 4 {
		rcpts = append(rcpts, "shared@example.org")
	}
	return rcpts
}

// durabilityMessage returns the message with the given token, in its wire
// form: complete headers, so that the server adds only its trace fields,
// and a body of about 4 KiB in which every line is different.
func durabilityMessage(token string, rcpts []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\n", durabilitySender)
	fmt.Fprintf(&b, "To: <%s>\r\n", strings.Join(rcpts, ">, <"))
	fmt.Fprintf(&b, "Subject: durability %s\r\n", token)
	fmt.Fprintf(&b, "Date: Mon, 02 Jan 2006 15:04:05 -0700\r\n")
	fmt.Fprintf(&b, "Message-ID: <%s@durability.test>\r\n", token)
	fmt.Fprintf(&b, "X-Token: %s\r\n\r\n", token)
	for line := range 48 {
		fmt.Fprintf(&b, "%s line %02d: %s\r\n", token, line, strings.Repeat(string(rune('a'+line%26)), 60))
	}
	fmt.Fprintf(&b, ".end of %s\r\n", token) // dot-stuffed on the wire
	return b.Bytes()
}

// checkDurableFile checks that a file in new/ is one of the attempted
// messages, whole, and returns its token.
func checkDurableFile(path string, attempted map[string][]string) (string, error) {
	stored, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	_, _, rest, err := cutTraceFields(stored)
	if err != nil {
		return "", fmt.Errorf("partial or foreign file (%d octets): %w", len(stored), err)
	}
	_, after, ok := bytes.Cut(rest, []byte("\nX-Token: "))
	if !ok {
		return "", errors.New("no X-Token field: not a message of this test, or cut short")
	}
	token, _, _ := bytes.Cut(after, []byte("\n"))
	rcpts, ok := attempted[string(token)]
	if !ok {
		return "", fmt.Errorf("token %q was never sent", token)
	}
	if want := storedForm(durabilityMessage(string(token), rcpts)); !bytes.Equal(rest, want) {
		i := 0
		for i < min(len(rest), len(want)) && rest[i] == want[i] {
			i++
		}
		return "", fmt.Errorf("message %s is incomplete or altered: %d octets, want %d; first difference at octet %d", token, len(rest), len(want), i)
	}
	return string(token), nil
}
