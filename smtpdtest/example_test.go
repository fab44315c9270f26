package smtpdtest_test

import (
	"crypto/tls"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// The examples are tests of code that sends mail, each shown as a function
// literal: an example cannot be a test, for want of a *testing.T. The same
// code runs in this package's tests.

// A test of code that sends mail: start a server for the test, point the
// code at it, and wait for what it sent.
func ExampleNewServer() {
	testWelcomeMail := func(t *testing.T) {
		srv := smtpdtest.NewServer(t, smtpdtest.Trace()) // the dialogue is in the test's output

		msg := "From: <app@example.net>\r\nSubject: Welcome\r\n\r\nHello!\r\n"
		if err := smtp.SendMail(srv.Addr, nil, "app@example.net", []string{"alice@example.org"}, []byte(msg)); err != nil {
			t.Fatal(err)
		}

		// t.Context() has no deadline: the wait ends after 10 seconds.
		m, err := srv.WaitFor(t.Context(), smtpdtest.To("alice@example.org"))
		if err != nil {
			t.Fatal(err) // the error lists the messages that did arrive
		}
		if got := m.DecodedHeader("Subject"); got != "Welcome" {
			t.Errorf("Subject = %q", got)
		}
		if got := m.Text(); got != "Hello!\r\n" {
			t.Errorf("text %q", got)
		}
	}
	_ = testWelcomeMail
}

// Testing how code copes with a server that refuses: a fault plan answers
// 451 to the first MAIL, as greylisting servers do, and the sessions show
// that the code retried.
func ExampleFaults() {
	testRetries := func(t *testing.T) {
		plan, _ := smtpd.ParseFaultPlan(strings.NewReader("mail first=1 reply 451 4.7.1 Greylisted, try again later"))
		srv := smtpdtest.NewServer(t, smtpdtest.Faults(plan))

		sendWithRetry(srv.Addr) // the code under test

		sessions, err := srv.WaitSessions(t.Context(), 2)
		if err != nil {
			t.Fatal(err) // lists the sessions, with each command and reply
		}
		if len(sessions) != 2 || len(sessions[0].Messages) != 0 || len(sessions[1].Messages) != 1 {
			t.Errorf("want a refused session, then one that delivered: %+v", sessions)
		}
	}
	_ = testRetries
}

// sendWithRetry stands for the code under test.
func sendWithRetry(addr string) {
	for range 3 {
		if smtp.SendMail(addr, nil, "app@example.net", []string{"alice@example.org"}, []byte("Subject: hi\r\n\r\nhi\r\n")) == nil {
			return
		}
	}
}

// What a session looked like, refusals included: each command with the
// reply it got, and how the session ended.
func ExampleServer_Sessions() {
	testBounce := func(t *testing.T) {
		plan, _ := smtpd.ParseFaultPlan(strings.NewReader("rcpt match=bounce@* reply 550 5.1.1 No such user here"))
		srv := smtpdtest.NewServer(t, smtpdtest.Faults(plan))

		err := smtp.SendMail(srv.Addr, nil, "app@example.net", []string{"bounce@example.org"}, []byte("Subject: hi\r\n\r\nhi\r\n"))
		if err == nil {
			t.Fatal("the bounce was not reported")
		}

		s := srv.Sessions()[0]
		last := s.Exchanges[len(s.Exchanges)-1]
		if last.Command != "RCPT TO:<bounce@example.org>" || last.Code != 550 {
			t.Errorf("last exchange %q → %q", last.Command, last.Reply)
		}
	}
	_ = testBounce
}

// Code that must not send mail: ExpectNone fails the test if a message
// arrives within the time given.
func ExampleServer_ExpectNone() {
	testNoMailForUnknownUser := func(t *testing.T) {
		srv := smtpdtest.NewServer(t)

		resetPassword(srv.Addr, "nobody@example.org") // the code under test

		srv.ExpectNone(t, 100*time.Millisecond, smtpdtest.To("nobody@example.org"))
	}
	_ = testNoMailForUnknownUser
}

// resetPassword stands for code under test.
func resetPassword(addr, user string) {}

// Subtests sharing one server take the messages each one caused, in one
// step, so none is lost or counted twice.
func ExampleServer_Take() {
	testDigest := func(t *testing.T) {
		srv := smtpdtest.NewServer(t)
		for _, user := range []string{"alice", "bob"} {
			t.Run(user, func(t *testing.T) {
				sendDigest(srv.Addr, user+"@example.org") // the code under test
				if msgs := srv.Take(); len(msgs) != 1 {
					t.Errorf("%d messages, want 1", len(msgs))
				}
			})
		}
	}
	_ = testDigest
}

// sendDigest stands for code under test.
func sendDigest(addr, to string) {}

// Matchers combine and say what they looked for: a failed wait reads
// "no message (to <alice@example.org> and not with a subject containing
// "Draft") among the 2 that arrived", with the two listed.
func ExampleAnd() {
	testFinalVersion := func(t *testing.T) {
		srv := smtpdtest.NewServer(t)
		// ... the code under test sends a draft, then the final version
		final := smtpdtest.And(smtpdtest.To("alice@example.org"), smtpdtest.Not(smtpdtest.Subject("Draft")))
		if _, err := srv.WaitFor(t.Context(), final); err != nil {
			t.Fatal(err)
		}
	}
	_ = testFinalVersion
}

// A matcher of one's own says what it looks for.
func ExampleFunc() {
	testInvoice := func(t *testing.T) {
		srv := smtpdtest.NewServer(t)
		// ... the code under test sends an invoice
		withPDF := smtpdtest.Func("with a PDF attached", func(m *smtpd.Message) bool {
			for _, a := range m.Attachments() {
				if a.ContentType == "application/pdf" {
					return true
				}
			}
			return false
		})
		if _, err := srv.WaitFor(t.Context(), withPDF); err != nil {
			t.Fatal(err) // "no message with a PDF attached among the …"
		}
	}
	_ = testInvoice
}

// Clients that insist on authenticating: test mode accepts any
// credentials and records them, an authorization identity too.
func ExampleTestMode() {
	testLogin := func(t *testing.T) {
		srv := smtpdtest.NewServer(t, smtpdtest.TestMode())
		auth := smtp.PlainAuth("", "app", "app-password", "127.0.0.1")
		if err := smtp.SendMail(srv.Addr, auth, "app@example.net", []string{"alice@example.org"}, []byte("Subject: hi\r\n\r\nhi\r\n")); err != nil {
			t.Fatal(err)
		}
		m := srv.Messages()[0]
		if m.AuthUser != "app" || m.AuthPassword != "app-password" {
			t.Errorf("logged in as %q", m.AuthUser)
		}
	}
	_ = testLogin
}

// Code that sends over TLS: the TLS option gives the server a certificate
// of its own, and ClientTLSConfig a configuration that trusts it.
// smtp.SendMail cannot be given one: it starts TLS by itself when the
// server offers it and then refuses the certificate ("x509: certificate
// signed by unknown authority"). Code under test that takes a *tls.Config,
// as sendMailTLS does, can be tested.
func ExampleTLS() {
	testTLS := func(t *testing.T) {
		srv := smtpdtest.NewServer(t, smtpdtest.TLS())
		msg := []byte("Subject: secret\r\n\r\nhi\r\n")
		if err := sendMailTLS(srv.Addr, srv.ClientTLSConfig(), "app@example.net", "alice@example.org", msg); err != nil {
			t.Fatal(err)
		}
		if m := srv.Messages()[0]; m.TLS == nil || m.TLS.Version < tls.VersionTLS12 {
			t.Error("the message did not come over TLS")
		}
	}
	_ = testTLS
}
