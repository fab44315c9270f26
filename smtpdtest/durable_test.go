package smtpdtest_test

import (
	"context"
	"net/smtp"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd/smtpdtest"
)

// A test server stores without flushing unless Durable is given: the
// commit counter says whether a flush to disk happened.
func TestDurableOption(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []smtpdtest.Option
		batches uint64
	}{
		{"default", nil, 0},
		{"Durable", []smtpdtest.Option{smtpdtest.Durable()}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := smtpdtest.NewServer(t, tc.opts...)
			msg := []byte("Subject: hello\r\n\r\nHello.\r\n")
			if err := smtp.SendMail(ts.Addr, nil, "bob@example.net", []string{"alice@example.org"}, msg); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			m, err := ts.WaitFor(ctx, smtpdtest.To("alice@example.org"))
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Paths) != 1 {
				t.Fatalf("stored in %q, want one file", m.Paths)
			}
			if got := ts.SMTP.Stats().CommitBatches; got != tc.batches {
				t.Errorf("%d flushed commit batches, want %d", got, tc.batches)
			}
		})
	}
}
