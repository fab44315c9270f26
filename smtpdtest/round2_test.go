package smtpdtest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// sendData delivers msg, as it is, from bob@example.net to rcpt.
func sendData(t *testing.T, addr, rcpt, msg string) {
	t.Helper()
	if err := smtp.SendMail(addr, nil, "bob@example.net", []string{rcpt}, []byte(msg)); err != nil {
		t.Errorf("sending to %s: %v", rcpt, err)
	}
}

// TestWaitWithoutDeadline: a context without a deadline (t.Context()) no
// longer means waiting forever: the wait timeout ends every kind of wait,
// with the listing of what arrived.
func TestWaitWithoutDeadline(t *testing.T) {
	ts := smtpdtest.NewServer(t, smtpdtest.WaitTimeout(50*time.Millisecond))
	send(t, ts.Addr, "alice@example.org")
	start := time.Now()
	_, err := ts.WaitFor(t.Context(), smtpdtest.To("nobody@example.org"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "smtpdtest.WaitTimeout") || !strings.Contains(err.Error(), "to <alice@example.org>") {
		t.Errorf("WaitFor = %v; want the wait timeout, and the message that came", err)
	}
	if _, err := ts.WaitMessages(t.Context(), 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitMessages = %v, want the wait timeout", err)
	}
	if _, err := ts.WaitSessions(t.Context(), 2); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 of 2 sessions ended") {
		t.Errorf("WaitSessions = %v, want the wait timeout after one session", err)
	}
	if took := time.Since(start); took > waitLimit {
		t.Errorf("three waits of 50ms took %v", took)
	}
}

// TestREADMEExample runs the README's example, with a recipient nobody
// sends to, under go test -timeout: the wait must end before the timeout
// does, and fail with what arrived rather than a timeout panic.
func TestREADMEExample(t *testing.T) {
	if os.Getenv("SMTPDTEST_README_CHILD") == "1" {
		readmeExample(t)
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestREADMEExample$", "-test.timeout=4s")
	cmd.Env = append(os.Environ(), "SMTPDTEST_README_CHILD=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the example ran with %v, want a test failure (exit status 1):\n%s", err, out)
	}
	for _, want := range []string{
		"no message to <nobody@example.org> among the 1 that arrived",
		"the test's own deadline (go test -timeout) is near",
		`1. from <app@example.net> to <alice@example.org> subject "Welcome"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the failure does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "panic: test timed out") {
		t.Errorf("the example ran into go test's timeout:\n%s", out)
	}
}

// readmeExample is the README's example (README.md, "Embedding the server
// in a Go test"), waiting for a message that is never sent.
func readmeExample(t *testing.T) {
	srv := smtpdtest.NewServer(t) // 127.0.0.1:0, t.TempDir(), closed with the test

	msg := "Subject: Welcome\r\n\r\nHello!\r\n"
	if err := smtp.SendMail(srv.Addr, nil, "app@example.net", []string{"alice@example.org"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}

	m, err := srv.WaitFor(t.Context(), smtpdtest.To("nobody@example.org")) // wakes on arrival; gives up after 10 s
	if err != nil {
		t.Fatal(err) // says what it waited for, and which messages did arrive
	}
	if m.DecodedHeader("Subject") != "Welcome" {
		t.Errorf("got %q", m.Text()) // m also has the envelope, the HTML, attachments, the Maildir files and the dialogue
	}
}

// TestSubjectDecoded: Subject matches the decoded subject (RFC 2047), and
// listings show it decoded.
func TestSubjectDecoded(t *testing.T) {
	ts := smtpdtest.NewServer(t)
	sendData(t, ts.Addr, "alice@example.org", "Subject: =?UTF-8?Q?caf=C3=A9?= at ten\r\n\r\nhi\r\n")
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if _, err := ts.WaitFor(ctx, smtpdtest.Subject("café")); err != nil {
		t.Error(err)
	}
	short, cancelShort := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancelShort()
	_, err := ts.WaitFor(short, smtpdtest.Subject("tea"))
	if err == nil || !strings.Contains(err.Error(), `subject "café at ten"`) {
		t.Errorf("error %v; want the subject listed decoded", err)
	}
}

// TestListingCapped: a failed wait lists 20 messages at most and says how
// many more there were.
func TestListingCapped(t *testing.T) {
	ts := smtpdtest.NewServer(t)
	for i := range 25 {
		send(t, ts.Addr, fmt.Sprintf("user%d@example.org", i))
	}
	short, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := ts.WaitFor(short, smtpdtest.To("nobody@example.org"))
	if err == nil {
		t.Fatal("WaitFor found a message for nobody")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 22 || !strings.Contains(lines[20], "20. from") || lines[21] != "\t… and 5 more" {
		t.Errorf("error of %d lines, want 22 (the summary, 20 messages and how many more):\n%s", len(lines), err)
	}
}

// TestMatchers: And, Or, Not and Func combine, and describe themselves.
func TestMatchers(t *testing.T) {
	m := &smtpd.Message{From: "bob@example.net", To: []string{"alice@example.org"}, Data: []byte("Subject: Welcome\r\n\r\nhi\r\n")}
	tests := []struct {
		matcher smtpdtest.Matcher
		matches bool
		says    string
	}{
		{smtpdtest.To("ALICE@example.org"), true, "to <ALICE@example.org>"},
		{smtpdtest.From("carol@example.net"), false, "from <carol@example.net>"},
		{smtpdtest.Subject("Welcome"), true, `with a subject containing "Welcome"`},
		{smtpdtest.And(smtpdtest.To("alice@example.org"), smtpdtest.Subject("Bye")), false, `(to <alice@example.org> and with a subject containing "Bye")`},
		{smtpdtest.Or(smtpdtest.To("carol@example.org"), smtpdtest.Subject("Welcome")), true, `(to <carol@example.org> or with a subject containing "Welcome")`},
		{smtpdtest.Not(smtpdtest.From("bob@example.net")), false, "not from <bob@example.net>"},
		{smtpdtest.And(), true, "of any kind"},
		{smtpdtest.Or(), false, "of no kind"},
		{smtpdtest.Func("with a greeting", func(m *smtpd.Message) bool { return strings.Contains(m.Text(), "hi") }), true, "with a greeting"},
	}
	for _, tt := range tests {
		if got := tt.matcher.Match(m); got != tt.matches {
			t.Errorf("%v: Match = %v, want %v", tt.matcher, got, tt.matches)
		}
		if got := tt.matcher.String(); got != tt.says {
			t.Errorf("String() = %q, want %q", got, tt.says)
		}
	}
}

// recordingTB is a testing.TB whose failures are recorded rather than
// reported, to test helpers that fail a test.
type recordingTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recordingTB) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errors
}

func TestExpectNone(t *testing.T) {
	ts := smtpdtest.NewServer(t)

	quiet := &recordingTB{TB: t}
	ts.ExpectNone(quiet, 0)
	ts.ExpectNone(quiet, 20*time.Millisecond)
	if f := quiet.failures(); len(f) > 0 {
		t.Errorf("no mail was sent, yet ExpectNone failed: %q", f)
	}

	// A message that is already there fails at once.
	send(t, ts.Addr, "alice@example.org")
	sent := &recordingTB{TB: t}
	ts.ExpectNone(sent, 0)
	if f := sent.failures(); len(f) != 1 || !strings.Contains(f[0], "want no message of any kind, but 1 arrived") || !strings.Contains(f[0], "to <alice@example.org>") {
		t.Errorf("ExpectNone after a message: %q", f)
	}
	// Matchers narrow what must not come.
	narrow := &recordingTB{TB: t}
	ts.ExpectNone(narrow, 0, smtpdtest.To("bob@example.org"))
	if f := narrow.failures(); len(f) > 0 {
		t.Errorf("no mail to bob, yet ExpectNone(To(bob)) failed: %q", f)
	}

	// One that arrives during the wait ends it at once.
	ts.Reset()
	done := make(chan struct{})
	go func() {
		defer close(done)
		send(t, ts.Addr, "bob@example.org")
	}()
	late := &recordingTB{TB: t}
	start := time.Now()
	ts.ExpectNone(late, waitLimit, smtpdtest.To("bob@example.org"))
	<-done
	if f := late.failures(); len(f) != 1 || !strings.Contains(f[0], "want no message to <bob@example.org>, but 1 arrived") {
		t.Errorf("ExpectNone while a message came: %q", f)
	}
	if took := time.Since(start); took >= waitLimit {
		t.Errorf("ExpectNone waited its whole %v although a message came", took)
	}
}

// TestTake: messages that arrive while the test takes them are each taken
// once, never lost.
func TestTake(t *testing.T) {
	ts := smtpdtest.NewServer(t)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { send(t, ts.Addr, fmt.Sprintf("user%d@example.org", i)) })
	}
	seen := make(map[string]int)
	take := func() {
		for _, m := range ts.Take() {
			seen[m.To[0]]++
		}
	}
	for take(); len(seen) < n; take() {
		if _, err := ts.WaitMessages(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	take()
	if len(seen) != n {
		t.Errorf("took messages for %d recipients, want %d", len(seen), n)
	}
	for rcpt, times := range seen {
		if times != 1 {
			t.Errorf("the message to %s was taken %d times", rcpt, times)
		}
	}
	if msgs := ts.Messages(); len(msgs) != 0 {
		t.Errorf("%d messages left after Take", len(msgs))
	}
}

// TestSessions: a test can see that the code under test retried after a
// 451, and what a refused recipient, a 552 and a dropped connection looked
// like, none of which leaves a message.
func TestSessions(t *testing.T) {
	plan, err := smtpd.ParseFaultPlan(strings.NewReader("mail first=1 reply 451 4.7.1 Greylisted\n" +
		"rcpt match=bounce@* reply 550 5.1.1 No such user\n" +
		"rcpt match=crash@* drop"))
	if err != nil {
		t.Fatal(err)
	}
	ts := smtpdtest.NewServer(t, smtpdtest.Faults(plan), smtpdtest.Config(smtpd.Config{MaxMessageBytes: 1000}))
	hi := []byte("Subject: hi\r\n\r\nhi\r\n")
	for i, try := range []struct {
		rcpt string
		msg  []byte
	}{{"alice@example.org", hi}, {"alice@example.org", hi}, {"bounce@example.org", hi}, {"crash@example.org", hi}, {"alice@example.org", bytes.Repeat([]byte("x"), 2000)}} {
		if err := smtp.SendMail(ts.Addr, nil, "app@example.net", []string{try.rcpt}, try.msg); (err == nil) != (i == 1) {
			t.Errorf("try %d, to %s: %v; only the second should succeed", i+1, try.rcpt, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	recs, err := ts.WaitSessions(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		End      smtpd.SessionEnd
		Last     string
		Messages int
	}
	want := []summary{
		{smtpd.EndDisconnected, "MAIL FROM:<app@example.net> BODY=8BITMIME SMTPUTF8 451", 0},
		{smtpd.EndQuit, "QUIT 221", 1},
		{smtpd.EndDisconnected, "RCPT TO:<bounce@example.org> 550", 0},
		{smtpd.EndDropped, "MAIL FROM:<app@example.net> BODY=8BITMIME SMTPUTF8 250", 0},
		{smtpd.EndDisconnected, ". 552", 0},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d sessions, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		last := r.Exchanges[len(r.Exchanges)-1]
		got := summary{r.End, fmt.Sprintf("%s %d", last.Command, last.Code), len(r.Messages)}
		if got != want[i] {
			t.Errorf("session %d: %+v, want %+v", i+1, got, want[i])
		}
	}
	ts.Reset()
	if recs := ts.Sessions(); len(recs) != 0 {
		t.Errorf("%d sessions after Reset", len(recs))
	}
}

// TestTLSOption: the TLS option's certificate works with ClientTLSConfig,
// over STARTTLS and implicit TLS; net/smtp.SendMail, which upgrades by
// itself, cannot check it, as the documentation says.
func TestTLSOption(t *testing.T) {
	ts := smtpdtest.NewServer(t, smtpdtest.TLS())
	msg := []byte("Subject: secret\r\n\r\nhi\r\n")
	err := smtp.SendMail(ts.Addr, nil, "app@example.net", []string{"alice@example.org"}, msg)
	if err == nil || !strings.Contains(err.Error(), "x509: certificate signed by unknown authority") {
		t.Errorf("SendMail = %v, want it to fail on the certificate", err)
	}
	if err := sendMailTLS(ts.Addr, ts.ClientTLSConfig(), "app@example.net", "alice@example.org", msg); err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", ts.TLSAddr, ts.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("over implicit TLS: %v", err)
	}
	msgs := ts.Messages()
	if len(msgs) != 1 || msgs[0].TLS == nil {
		t.Fatalf("messages %v, want one that came over TLS", msgs)
	}
	if cfg := smtpdtest.NewServer(t).ClientTLSConfig(); cfg != nil {
		t.Error("ClientTLSConfig of a server without TLS is not nil")
	}
}

// sendMailTLS is smtp.SendMail with the TLS configuration given: what code
// under test needs to send to a server whose certificate is its own.
func sendMailTLS(addr string, tlsConfig *tls.Config, from, to string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.StartTLS(tlsConfig); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
