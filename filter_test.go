package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// sendFiltered sends a one-line message to rcpt and returns the SMTP error.
func sendFiltered(t *testing.T, addr, rcpt string) error {
	t.Helper()
	return smtp.SendMail(addr, nil, "bob@example.net", []string{rcpt}, []byte("Subject: hi\r\n\r\nhello\r\n"))
}

func TestFilterFuncTransforms(t *testing.T) {
	upper := smtpd.FilterFunc(func(ctx context.Context, m *smtpd.Message, r io.Reader, w io.Writer) error {
		in, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		_, err = w.Write(bytes.ToUpper(in))
		return err
	})
	srv := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{Filter: upper}))
	if err := sendFiltered(t, srv.Addr, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	m := srv.Messages()[0]
	stored, err := os.ReadFile(m.Paths[0])
	if err != nil {
		t.Fatal(err)
	}
	// The filter saw the stored form: trace headers, LF line endings.
	if !bytes.HasPrefix(stored, []byte("RETURN-PATH: <BOB@EXAMPLE.NET>\n")) || !bytes.HasSuffix(stored, []byte("\nSUBJECT: HI\n\nHELLO\n")) {
		t.Errorf("stored message:\n%s", stored)
	}
	// Message.Data stays what the client sent.
	if got, want := string(m.Data), "Subject: hi\r\n\r\nhello\r\n"; got != want {
		t.Errorf("Data = %q, want %q", got, want)
	}
}

func TestFilterFuncRefuses(t *testing.T) {
	filter := smtpd.FilterFunc(func(ctx context.Context, m *smtpd.Message, r io.Reader, w io.Writer) error {
		switch {
		case strings.HasPrefix(m.To[0], "spam@"):
			return &smtpd.Rejection{Reason: "no\r\nthanks"} // CR LF must not reach the wire
		case strings.HasPrefix(m.To[0], "later@"):
			return errors.New("scanner offline")
		case strings.HasPrefix(m.To[0], "big@"):
			_, err := w.Write(make([]byte, 2000))
			return err
		case strings.HasPrefix(m.To[0], "slow@"):
			<-ctx.Done()
			return ctx.Err()
		}
		_, err := io.Copy(w, r)
		return err
	})
	srv := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{Filter: filter, MaxMessageBytes: 1000, FilterTimeout: 50 * time.Millisecond}))
	for _, tc := range []struct{ rcpt, want string }{
		{"spam@example.org", "554 5.7.1 no thanks"},
		{"later@example.org", "451 4.3.0 Error: content filter failed, try again later"},
		{"big@example.org", "552 5.3.4 Error: filtered message exceeds fixed limit"},
		{"slow@example.org", "451 4.3.0 Error: content filter failed, try again later"},
	} {
		err := sendFiltered(t, srv.Addr, tc.rcpt)
		var reply *textproto.Error
		if !errors.As(err, &reply) || fmt.Sprintf("%d %s", reply.Code, reply.Msg) != tc.want {
			t.Errorf("to %s: got %v, want %s", tc.rcpt, err, tc.want)
		}
	}
	if err := sendFiltered(t, srv.Addr, "ok@example.org"); err != nil {
		t.Errorf("to ok: %v", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
	st := srv.SMTP.Stats()
	if st.Rejected != 2 || st.Failed != 2 {
		t.Errorf("Stats: rejected %d, failed %d; want 2 and 2", st.Rejected, st.Failed)
	}
}
