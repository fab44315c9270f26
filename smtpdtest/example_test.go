package smtpdtest_test

import (
	"net/smtp"
	"strings"
	"testing"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// A test of code that sends mail: start a server for the test, point the
// code at it, and wait for what it sent. (Shown as a function literal: an
// example cannot be a test.)
func ExampleNewServer() {
	testWelcomeMail := func(t *testing.T) {
		srv := smtpdtest.NewServer(t, smtpdtest.Trace()) // the dialogue is in the test's output

		msg := "From: <app@example.net>\r\nSubject: Welcome\r\n\r\nHello!\r\n"
		if err := smtp.SendMail(srv.Addr, nil, "app@example.net", []string{"alice@example.org"}, []byte(msg)); err != nil {
			t.Fatal(err)
		}

		m, err := srv.WaitFor(t.Context(), smtpdtest.To("alice@example.org"))
		if err != nil {
			t.Fatal(err) // the error lists the messages that did arrive
		}
		if got := m.Header().Get("Subject"); got != "Welcome" {
			t.Errorf("Subject = %q", got)
		}
	}
	_ = testWelcomeMail
}

// Testing how code copes with a server that refuses: a fault plan answers
// 451 to the first MAIL, as greylisting servers do, and the test checks
// that the code retried.
func ExampleFaults() {
	testRetries := func(t *testing.T) {
		plan, _ := smtpd.ParseFaultPlan(strings.NewReader("mail first=1 reply 451 4.7.1 Greylisted, try again later"))
		srv := smtpdtest.NewServer(t, smtpdtest.Faults(plan))

		sendWithRetry(srv.Addr) // the code under test

		if _, err := srv.WaitMessages(t.Context(), 1); err != nil {
			t.Fatal(err)
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

// Clients that insist on authenticating: AnyAuth accepts any credentials
// and records them.
func ExampleAnyAuth() {
	testLogin := func(t *testing.T) {
		srv := smtpdtest.NewServer(t, smtpdtest.AnyAuth())
		auth := smtp.PlainAuth("", "app", "app-password", "127.0.0.1")
		if err := smtp.SendMail(srv.Addr, auth, "app@example.net", []string{"alice@example.org"}, []byte("Subject: hi\r\n\r\nhi\r\n")); err != nil {
			t.Fatal(err)
		}
		msgs, _ := srv.WaitMessages(t.Context(), 1)
		if msgs[0].AuthUser != "app" || msgs[0].AuthPassword != "app-password" {
			t.Errorf("logged in as %q", msgs[0].AuthUser)
		}
	}
	_ = testLogin
}
