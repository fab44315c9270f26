package smtpd_test

import (
	"bytes"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// emersion/go-smtp's client, written by others, against smtpd: its DSN
// options (RFC 3461), and its LMTP client reading one reply per
// recipient, over TCP and over a Unix socket. (go-smtp's client has no
// BDAT; Dovecot's LMTP proxy sends chunks, in dovecot_linux_test.go.)

// TestGoSMTPClientDSN sends with every DSN option go-smtp has: it sends
// them because EHLO offers DSN, and they arrive decoded in Message.DSN.
func TestGoSMTPClientDSN(t *testing.T) {
	t.Parallel()
	ts := smtpdtest.NewServer(t)
	c, err := gosmtp.Dial(ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("go-smtp.test"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"DSN", "CHUNKING", "BINARYMIME"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("go-smtp does not see %s offered", ext)
		}
	}
	if err := c.Mail(interopFrom, &gosmtp.MailOptions{Return: gosmtp.DSNReturnHeaders, EnvelopeID: "QQ+314 = pi"}); err != nil {
		t.Fatal(err)
	}
	rcpts := []struct {
		to   string
		opts *gosmtp.RcptOptions
	}{
		{interopTo, &gosmtp.RcptOptions{Notify: []gosmtp.DSNNotify{gosmtp.DSNNotifySuccess, gosmtp.DSNNotifyDelayed},
			OriginalRecipientType: gosmtp.DSNAddressTypeRFC822, OriginalRecipient: "Alice+list=x@example.org"}},
		{interopCc, &gosmtp.RcptOptions{Notify: []gosmtp.DSNNotify{gosmtp.DSNNotifyNever}}},
		{"dave@example.org", nil},
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r.to, r.opts); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(interopMessage("go-smtp", interopTo, interopCc))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	msgs, err := ts.WaitMessages(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := smtpd.DSN{Return: "HDRS", EnvelopeID: "QQ+314 = pi", Recipients: []smtpd.DSNRecipient{
		{Notify: []string{"SUCCESS", "DELAY"}, OriginalType: "rfc822", Original: "Alice+list=x@example.org"},
		{Notify: []string{"NEVER"}},
		{},
	}}
	if got := msgs[0].DSN; !dsnEqual(got, want) {
		t.Errorf("Message.DSN = %+v, want %+v", got, want)
	}
}

// lmtpWithGoSMTP delivers msg to alice, bob and carol with go-smtp's LMTP
// client over conn, checks that the client reports bob's full mailbox
// (lmtpFullMailbox) and nothing else, and returns what it reports for each
// recipient.
func lmtpWithGoSMTP(t *testing.T, conn net.Conn, msg []byte) map[string]*gosmtp.DataResponse {
	t.Helper()
	c := gosmtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("go-smtp.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(interopFrom, nil); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"alice@example.org", "bob@example.org", "carol@example.org"} {
		if err := c.Rcpt(to, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(msg)
	resp, err := w.CloseWithLMTPResponse()
	var lmtpErr gosmtp.LMTPDataError
	if !errors.As(err, &lmtpErr) {
		t.Fatalf("CloseWithLMTPResponse: %v, want an LMTPDataError for bob", err)
	}
	if len(lmtpErr) != 1 || lmtpErr["bob@example.org"] == nil || lmtpErr["bob@example.org"].Code != 452 ||
		lmtpErr["bob@example.org"].EnhancedCode != (gosmtp.EnhancedCode{4, 2, 2}) {
		t.Errorf("go-smtp reports the errors %v, want bob's 452 4.2.2 alone", lmtpErr)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	return resp
}

// lmtpGoSMTPMessage is what the go-smtp tests send with lmtpWithGoSMTP.
const lmtpGoSMTPMessage = "Subject: over LMTP\r\n\r\nHi.\r\n"

// checkLMTPDelivery checks that go-smtp saw alice and carol accepted and
// that the server stored the message for them.
func checkLMTPDelivery(t *testing.T, resp map[string]*gosmtp.DataResponse, msgs []*smtpd.Message) {
	t.Helper()
	for _, to := range []string{"alice@example.org", "carol@example.org"} {
		if r := resp[to]; r == nil || !strings.Contains(r.StatusText, "Ok: queued as") {
			t.Errorf("go-smtp's response for %s: %+v", to, r)
		}
	}
	if len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{"alice@example.org", "carol@example.org"}) ||
		!bytes.HasPrefix(msgs[0].Data, []byte("Subject: over LMTP")) {
		t.Errorf("stored %d messages; want one, to alice and carol", len(msgs))
	}
}

func TestGoSMTPLMTPClient(t *testing.T) {
	t.Parallel()
	ts := lmtpServer(t, lmtpFullMailbox)
	conn, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	resp := lmtpWithGoSMTP(t, conn, []byte(lmtpGoSMTPMessage))
	msgs, err := ts.WaitMessages(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	checkLMTPDelivery(t, resp, msgs)
}

// TestGoSMTPLMTPUnixSocket serves LMTP on a Unix socket, as Postfix's
// lmtp:unix: transport wants it.
func TestGoSMTPLMTPUnixSocket(t *testing.T) {
	t.Parallel()
	plan, err := smtpd.ParseFaultPlan(strings.NewReader(lmtpFullMailbox))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*smtpd.Message
	done := make(chan struct{}, 1)
	srv, err := smtpd.NewServer(smtpd.Config{LMTP: true, DataDir: t.TempDir(), Hostname: "smtpd.test", Faults: plan,
		Delivered: func(m *smtpd.Message) { msgs = append(msgs, m); done <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "lmtp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, smtpd.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	resp := lmtpWithGoSMTP(t, conn, []byte(lmtpGoSMTPMessage))
	<-done // Delivered runs before the replies go out
	checkLMTPDelivery(t, resp, msgs)
	if got := string(msgs[0].Data); !strings.HasPrefix(got, "Subject") {
		t.Errorf("Message.Data = %q", got)
	}
}
