package smtpd_test

import (
	"errors"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// planOf parses a fault plan or fails the test.
func planOf(t *testing.T, text string) *smtpd.FaultPlan {
	t.Helper()
	plan, err := smtpd.ParseFaultPlan(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// replyCode returns the SMTP code of a net/smtp error, or 0.
func replyCode(err error) int {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return tp.Code
	}
	return 0
}

func sendMail(addr, from string, to ...string) error {
	return smtp.SendMail(addr, nil, from, to, []byte("Subject: test\r\n\r\nbody\r\n"))
}

// TestFaultGreylisting: 451 for the first two tries, then accept.
func TestFaultGreylisting(t *testing.T) {
	srv := smtpdtest.NewServer(t, smtpdtest.Faults(planOf(t, "mail first=2 reply 451 4.7.1 Greylisted, try again later")))
	for try := 1; try <= 3; try++ {
		err := sendMail(srv.Addr, "app@example.net", "alice@example.org")
		want := 451
		if try == 3 {
			want = 0
		}
		if got := replyCode(err); got != want || (want == 0 && err != nil) {
			t.Errorf("try %d: %v, want code %d", try, err, want)
		}
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

// TestFaultMatchAndNth: 550 for bounce@… recipients, 452 on the third RCPT
// of a session; the other recipients get the message.
func TestFaultMatchAndNth(t *testing.T) {
	srv := smtpdtest.NewServer(t, smtpdtest.Faults(planOf(t, `
rcpt match=bounce@* reply 550 5.1.1 No such user here
rcpt nth=3 per=session reply 452 4.5.3 Too many recipients
`)))
	c, err := smtp.Dial(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("app@example.net"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rcpt string
		want int
	}{
		{"alice@example.org", 0},
		{"bounce@example.org", 550},
		{"carol@example.org", 452}, // the third RCPT of the session
		{"dave@example.org", 0},
	} {
		if got := replyCode(c.Rcpt(tc.rcpt)); got != tc.want {
			t.Errorf("RCPT %s: code %d, want %d", tc.rcpt, got, tc.want)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: x\r\n\r\ny\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := srv.WaitMessages(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m[0].To, " "); got != "alice@example.org dave@example.org" {
		t.Errorf("delivered to %s", got)
	}
}

// TestFaultRateLimit: a token bucket at connect; past the burst, 421.
func TestFaultRateLimit(t *testing.T) {
	srv := smtpdtest.NewServer(t, smtpdtest.Faults(planOf(t, "connect rate=0.01/s burst=2 reply 421 4.7.0 Too many connections, slow down")))
	for i, want := range []int{0, 0, 421, 421} {
		c, err := smtp.Dial(srv.Addr)
		if got := replyCode(err); got != want {
			t.Errorf("connection %d: %v, want code %d", i+1, err, want)
		}
		if err == nil {
			c.Quit()
		}
	}
}

// TestFaultDelayAndDrop: latency before a reply, and a connection dropped
// at the end of the data: nothing is stored, the client sees no reply.
func TestFaultDelayAndDrop(t *testing.T) {
	srv := smtpdtest.NewServer(t, smtpdtest.Faults(planOf(t, `
data-end match=slow@* delay=200ms
data-end match=crash@* drop
helo match=crash.test drop
`)))
	start := time.Now()
	if err := sendMail(srv.Addr, "app@example.net", "slow@example.org"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("delayed delivery took %v, want at least 200ms", d)
	}
	err := sendMail(srv.Addr, "app@example.net", "crash@example.org")
	if err == nil || replyCode(err) != 0 {
		t.Errorf("dropped at the end of data: %v, want a broken connection", err)
	}
	conn, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := textproto.NewConn(conn)
	tc.ReadResponse(220)
	tc.PrintfLine("HELO crash.test")
	if _, _, err := tc.ReadResponse(250); !errors.Is(err, io.EOF) {
		t.Errorf("HELO crash.test: %v, want EOF", err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || msgs[0].To[0] != "slow@example.org" {
		t.Errorf("stored %d messages, want only the delayed one", len(msgs))
	}
}

// TestFaultGreetingAndData: a 554 greeting turns clients away; a reply at
// DATA comes instead of 354.
func TestFaultGreetingAndData(t *testing.T) {
	srv := smtpdtest.NewServer(t, smtpdtest.Faults(planOf(t, `
connect first=1 reply 554 5.3.2 Not accepting mail now
data reply 554 5.7.1 Message refused
`)))
	if _, err := smtp.Dial(srv.Addr); replyCode(err) != 554 {
		t.Errorf("first connection: %v, want 554", err)
	}
	if err := sendMail(srv.Addr, "app@example.net", "alice@example.org"); replyCode(err) != 554 || !strings.Contains(err.Error(), "Message refused") {
		t.Errorf("DATA: %v, want 554 Message refused", err)
	}
}

// TestFaultPlanReplaced: SetFaults changes the plan while the server runs;
// nil removes it.
func TestFaultPlanReplaced(t *testing.T) {
	srv := smtpdtest.NewServer(t)
	if err := sendMail(srv.Addr, "app@example.net", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := srv.SMTP.SetFaults(planOf(t, "rcpt reply 450 4.2.1 Mailbox busy")); err != nil {
		t.Fatal(err)
	}
	if err := sendMail(srv.Addr, "app@example.net", "alice@example.org"); replyCode(err) != 450 {
		t.Errorf("with the plan: %v, want 450", err)
	}
	if err := srv.SMTP.SetFaults(&smtpd.FaultPlan{Rules: []smtpd.FaultRule{{At: smtpd.FaultRcpt}}}); err == nil {
		t.Error("SetFaults took a rule that does nothing")
	}
	srv.SMTP.SetFaults(nil)
	if err := sendMail(srv.Addr, "app@example.net", "alice@example.org"); err != nil {
		t.Errorf("without a plan: %v", err)
	}
}

// TestFaultAuthAndTestMode: in test mode any credentials are accepted and
// recorded, except when a fault rule answers AUTH; the transcript keeps
// the dialogue without the secret.
func TestFaultAuthAndTestMode(t *testing.T) {
	srv := smtpdtest.NewServer(t, smtpdtest.TestMode(), smtpdtest.Faults(planOf(t, "auth first=1 reply 454 4.7.0 Temporary authentication failure")))
	auth := smtp.PlainAuth("", "alice", "s3cret-pw", "127.0.0.1")
	send := func() error {
		return smtp.SendMail(srv.Addr, auth, "alice@example.net", []string{"bob@example.org"}, []byte("Subject: hi\r\n\r\nhi\r\n"))
	}
	if err := send(); replyCode(err) != 454 {
		t.Fatalf("first AUTH: %v, want 454", err)
	}
	if err := send(); err != nil {
		t.Fatalf("second AUTH: %v", err)
	}
	m := srv.Messages()[0]
	if m.AuthUser != "alice" || m.AuthPassword != "s3cret-pw" {
		t.Errorf("AuthUser, AuthPassword = %q, %q", m.AuthUser, m.AuthPassword)
	}
	var dialogue strings.Builder
	transcript := m.Transcript()
	for i, line := range transcript {
		if i > 0 && line.Time.Before(transcript[i-1].Time) {
			t.Errorf("transcript times go back at line %d", i)
		}
		dialogue.WriteString(line.String() + "\n")
	}
	for _, want := range []string{"C: AUTH PLAIN <redacted>\n", "S: 235 2.7.0 Authentication successful\n", "* authenticated as alice\n", "C: MAIL FROM:<alice@example.net>", "C: <message data: 19 octets>\n", "C: .\n"} {
		if !strings.Contains(dialogue.String(), want) {
			t.Errorf("transcript lacks %q:\n%s", want, dialogue.String())
		}
	}
	if strings.Contains(dialogue.String(), "s3cret") || strings.Contains(dialogue.String(), "czNjcmV0") {
		t.Errorf("transcript shows the password:\n%s", dialogue.String())
	}
}

// TestFaultsParallel: parallel tests, each with its own server and plan,
// and subtests sharing one server.
func TestFaultsParallel(t *testing.T) {
	shared := smtpdtest.NewServer(t, smtpdtest.Faults(planOf(t, "rcpt match=bounce@* reply 550 5.1.1 No such user here")))
	for _, who := range []string{"a", "b", "c", "d"} {
		t.Run(who, func(t *testing.T) {
			t.Parallel()
			own := smtpdtest.NewServer(t, smtpdtest.Faults(planOf(t, "mail first=1 reply 451 4.7.1 later")))
			if err := sendMail(own.Addr, who+"@example.net", "x@example.org"); replyCode(err) != 451 {
				t.Errorf("own server, first try: %v", err)
			}
			if err := sendMail(own.Addr, who+"@example.net", "x@example.org"); err != nil {
				t.Errorf("own server, second try: %v", err)
			}
			if err := sendMail(shared.Addr, who+"@example.net", "bounce@example.org"); replyCode(err) != 550 {
				t.Errorf("shared server, bounce: %v", err)
			}
			if err := sendMail(shared.Addr, who+"@example.net", who+"@example.org"); err != nil {
				t.Errorf("shared server: %v", err)
			}
			if _, err := shared.WaitFor(t.Context(), smtpdtest.To(who+"@example.org")); err != nil {
				t.Error(err)
			}
		})
	}
}
