package smtpdtest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd/smtpdtest"
)

func TestWaitForPredicate(t *testing.T) {
	ts := smtpdtest.NewServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	var wg sync.WaitGroup
	for _, rcpt := range []string{"alice@example.org", "bob@example.org", "carol@example.org"} {
		wg.Go(func() { send(t, ts.Addr, rcpt) })
	}
	m, err := ts.WaitFor(ctx, smtpdtest.To("BOB@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header().Get("Subject"); got != "for bob@example.org" {
		t.Errorf("Subject = %q", got)
	}
	if got := string(m.Body()); got != "Hello.\r\n" {
		t.Errorf("Body = %q", got)
	}
	wg.Wait()
	if _, err := ts.WaitFor(ctx, smtpdtest.Subject("for carol")); err != nil {
		t.Error(err)
	}
	if _, err := ts.WaitFor(ctx, smtpdtest.From("bob@example.net")); err != nil {
		t.Error(err)
	}
}

func TestWaitForReportsWhatArrived(t *testing.T) {
	ts := smtpdtest.NewServer(t)
	send(t, ts.Addr, "alice@example.org")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := ts.WaitFor(ctx, smtpdtest.To("nobody@example.org"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	for _, want := range []string{"no message to <nobody@example.org> among the 1 that arrived", `from <bob@example.net> to <alice@example.org> subject "for alice@example.org"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestReset shows subtests sharing one server, each waiting for its own
// messages after a Reset.
func TestReset(t *testing.T) {
	ts := smtpdtest.NewServer(t)
	for _, rcpt := range []string{"first@example.org", "second@example.org"} {
		t.Run(rcpt, func(t *testing.T) {
			ts.Reset()
			send(t, ts.Addr, rcpt)
			msgs, err := ts.WaitMessages(t.Context(), 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 || msgs[0].To[0] != rcpt {
				t.Errorf("after Reset: %d messages, first to %v", len(msgs), msgs[0].To)
			}
		})
	}
}

// TestTraceOption checks that the Trace option does not disturb a session
// (its lines go to the test's output, shown with -v or on failure).
func TestTraceOption(t *testing.T) {
	ts := smtpdtest.NewServer(t, smtpdtest.Trace())
	send(t, ts.Addr, "alice@example.org")
	if _, err := ts.WaitMessages(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if st := ts.SMTP.RuntimeSettings(); !st.Verbose {
		t.Error("Trace option: the server's trace is off")
	}
}

// BenchmarkNewServer measures what a test pays for its own server: start
// on a free port with a fresh data directory, then close.
func BenchmarkNewServer(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ts := smtpdtest.NewServer(b)
		ts.Close()
	}
}
