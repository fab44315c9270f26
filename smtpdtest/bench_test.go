package smtpdtest_test

import (
	"context"
	"net/smtp"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd/smtpdtest"
)

// BenchmarkWholeTest measures what a whole test of code that sends mail
// costs: a new server, one message sent with net/smtp, WaitFor, and Close
// (BenchmarkNewServer is the server alone).
func BenchmarkWholeTest(b *testing.B) {
	msg := []byte("From: <app@example.net>\r\nTo: <alice@example.org>\r\nSubject: Welcome\r\n\r\nHello!\r\n")
	b.ReportAllocs()
	for b.Loop() {
		srv := smtpdtest.NewServer(b)
		if err := smtp.SendMail(srv.Addr, nil, "app@example.net", []string{"alice@example.org"}, msg); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := srv.WaitFor(ctx, smtpdtest.To("alice@example.org"))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		srv.Close()
	}
}
