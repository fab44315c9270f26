package smtpd_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// LMTP (RFC 2033) from the client's side: the LHLO greeting, and after the
// data of a message one reply per accepted recipient, in RCPT order, so
// that one mailbox that cannot take the message does not fail the others.

// lmtpServer starts an LMTP server with a fault plan (may be empty).
func lmtpServer(t *testing.T, plan string) *smtpdtest.Server {
	t.Helper()
	p, err := smtpd.ParseFaultPlan(strings.NewReader(plan))
	if err != nil {
		t.Fatal(err)
	}
	return smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{LMTP: true}), smtpdtest.Faults(p))
}

// lmtpClient connects to an LMTP server and greets it with LHLO.
func lmtpClient(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, greeting := dialGreeted(t, addr)
	if !strings.HasSuffix(greeting.Lines[0], " LMTP smtpd") {
		t.Errorf("greeting %q does not say LMTP", greeting)
	}
	r, err := c.Cmd("LHLO lmtp.test")
	if err != nil || r.Code != 250 {
		t.Fatalf("LHLO: %v %v", r, err)
	}
	for _, ext := range []string{"PIPELINING", "ENHANCEDSTATUSCODES", "CHUNKING", "BINARYMIME", "DSN"} {
		if !slices.Contains(r.Lines, ext) {
			t.Errorf("LHLO reply %q lacks %s", r, ext)
		}
	}
	return c
}

// TestLMTPGreeting: an LMTP server refuses HELO and EHLO (RFC 2033 §4.1)
// and takes LHLO; an SMTP server does not know LHLO.
func TestLMTPGreeting(t *testing.T) {
	t.Parallel()
	ts := lmtpServer(t, "")
	c, _ := dialGreeted(t, ts.Addr)
	for _, cmd := range []string{"HELO client.test", "EHLO client.test"} {
		if r, err := c.Cmd(cmd); err != nil || r.Code != 500 || r.Enhanced != "5.5.1" {
			t.Errorf("%s to an LMTP server: %v %v, want 500 5.5.1", cmd, r, err)
		}
	}
	if r, err := c.Cmd("MAIL FROM:<bob@example.net>"); err != nil || r.Code != 503 {
		t.Errorf("MAIL before LHLO: %v %v, want 503", r, err)
	}
	lmtpClient(t, ts.Addr)

	smtp := smtpdtest.NewServer(t)
	c, _ = dialGreeted(t, smtp.Addr)
	if r, err := c.Cmd("LHLO client.test"); err != nil || r.Code != 500 || r.Enhanced != "5.5.2" {
		t.Errorf("LHLO to an SMTP server: %v %v, want 500 5.5.2", r, err)
	}
}

// lmtpRecipients are the recipients of the per-recipient tests: bob's
// mailbox is full (a fault at the end of the data), broken's cannot be
// opened (a file where its directory should be); alice and carol take the
// message. bob comes first, so that the mailbox the message is written in
// first is one that refuses it.
var lmtpRecipients = []string{"bob@example.org", "alice@example.org", "broken@example.org", "carol@example.org"}

const lmtpFullMailbox = "data-end match=bob@* reply 452 4.2.2 Mailbox full\n"

// TestLMTPRepliesPerRecipient sends a message to four recipients, with
// DATA and with BDAT … LAST, and checks the four replies after the data,
// in RCPT order, each naming its recipient; the message is stored for
// alice and carol only, once each, and the session goes on.
func TestLMTPRepliesPerRecipient(t *testing.T) {
	t.Parallel()
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			t.Parallel()
			ts := lmtpServer(t, lmtpFullMailbox)
			if err := os.MkdirAll(ts.MaildirRoot, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ts.MaildirRoot, "broken"), []byte("not a Maildir"), 0o600); err != nil {
				t.Fatal(err)
			}
			c := lmtpClient(t, ts.Addr)
			cmds := []string{"MAIL FROM:<" + interopFrom + ">"}
			for _, to := range lmtpRecipients {
				cmds = append(cmds, "RCPT TO:<"+to+">")
			}
			c.Send(cmds...)
			for range cmds {
				expectReply(t, c, 250, "")
			}
			msg := interopMessage("lmtp", lmtpRecipients...)
			if chunked {
				wire, n := chunks(msg, 1000)
				c.SendRaw(wire)
				for range n - 1 {
					expectReply(t, c, 250, "2.0.0")
				}
			} else {
				c.Send("DATA")
				expectReply(t, c, 354, "")
				c.SendRaw(client.DotStuff(msg))
			}
			want := []struct {
				code int
				enh  string
			}{{452, "4.2.2"}, {250, "2.0.0"}, {451, "4.3.0"}, {250, "2.0.0"}}
			var id string
			for i, w := range want {
				r := expectReply(t, c, w.code, w.enh)
				if rcpt := "<" + lmtpRecipients[i] + "> "; !strings.HasPrefix(r.Lines[0], rcpt) {
					t.Errorf("reply %d %q does not name %s", i+1, r, rcpt)
				}
				if w.code == 250 {
					id = strings.TrimPrefix(r.Lines[0], "<"+lmtpRecipients[i]+"> Ok: queued as ")
				}
			}
			if r, err := c.Cmd("NOOP"); err != nil || r.Code != 250 {
				t.Fatalf("NOOP after the replies: %v %v", r, err)
			}

			msgs, err := ts.WaitMessages(t.Context(), 1)
			if err != nil {
				t.Fatal(err)
			}
			m := msgs[0]
			if m.ID != id || !slices.Equal(m.To, []string{"alice@example.org", "carol@example.org"}) || !m.LMTP {
				t.Errorf("Message ID %q To %q LMTP %v; want %q, alice and carol, true", m.ID, m.To, m.LMTP, id)
			}
			if !bytes.Equal(m.Data, msg) {
				t.Errorf("Message.Data is not the message sent")
			}
			for _, box := range []string{"alice", "carol"} {
				names := dirNames(t, filepath.Join(ts.MaildirRoot, box, "new"))
				if len(names) != 1 {
					t.Fatalf("%s/new holds %q, want one message", box, names)
				}
				stored, err := os.ReadFile(filepath.Join(ts.MaildirRoot, box, "new", names[0]))
				if err != nil {
					t.Fatal(err)
				}
				_, received, rest := splitTraceFields(t, stored)
				if !strings.Contains(received, " with LMTP id "+id) {
					t.Errorf("Received field %q does not say LMTP", received)
				}
				if !bytes.Equal(rest, storedForm(msg)) {
					t.Errorf("%s: stored message differs from what was sent", box)
				}
			}
			for _, sub := range []string{"new", "tmp"} {
				if names := dirNames(t, filepath.Join(ts.MaildirRoot, "bob", sub)); len(names) != 0 {
					t.Errorf("bob/%s holds %q, though bob's reply refused the message", sub, names)
				}
			}
		})
	}
}

// TestLMTPAllRefused: when every recipient is refused after the data,
// each gets its reply and nothing is stored.
func TestLMTPAllRefused(t *testing.T) {
	t.Parallel()
	ts := lmtpServer(t, "data-end match=*@example.org reply 550 5.7.1 Not today\n")
	c := lmtpClient(t, ts.Addr)
	c.Send("MAIL FROM:<bob@example.net>", "RCPT TO:<alice@example.org>", "RCPT TO:<carol@example.org>", "DATA")
	for range 3 {
		expectReply(t, c, 250, "")
	}
	expectReply(t, c, 354, "")
	c.SendRaw([]byte("Subject: no\r\n\r\nno\r\n.\r\n"))
	for _, rcpt := range []string{"alice", "carol"} {
		r := expectReply(t, c, 550, "5.7.1")
		if !strings.HasPrefix(r.Lines[0], "<"+rcpt+"@example.org> ") {
			t.Errorf("reply %q does not name %s", r, rcpt)
		}
		for _, sub := range []string{"new", "tmp"} {
			if names := dirNames(t, filepath.Join(ts.MaildirRoot, rcpt, sub)); len(names) != 0 {
				t.Errorf("%s/%s holds %q", rcpt, sub, names)
			}
		}
	}
	if n := len(ts.Messages()); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

// TestLMTPTooLarge: a message over the size limit gets 552 for each
// recipient, with DATA and with BDAT.
func TestLMTPTooLarge(t *testing.T) {
	t.Parallel()
	ts := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{LMTP: true, MaxMessageBytes: 100}))
	c := lmtpClient(t, ts.Addr)
	big := []byte("Subject: big\r\n\r\n" + strings.Repeat("x", 200) + "\r\n")
	for _, chunked := range []bool{false, true} {
		c.Send("MAIL FROM:<bob@example.net>", "RCPT TO:<alice@example.org>", "RCPT TO:<carol@example.org>")
		for range 3 {
			expectReply(t, c, 250, "")
		}
		if chunked {
			c.SendRaw(bdat(big, true))
		} else {
			c.Send("DATA")
			expectReply(t, c, 354, "")
			c.SendRaw(client.DotStuff(big))
		}
		expectReply(t, c, 552, "5.3.4")
		expectReply(t, c, 552, "5.3.4")
	}
}
