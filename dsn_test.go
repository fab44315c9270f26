package smtpd_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// TestDSNParametersRecorded sends every DSN parameter of RFC 3461, some
// xtext-encoded, and checks that EHLO offers DSN, that Message.DSN holds the
// decoded values for the right recipients, and that the transcript says
// what was asked and that no notification will be sent.
func TestDSNParametersRecorded(t *testing.T) {
	srv := smtpdtest.NewServer(t)
	c := dialReady(t, srv.Addr, "client.test")
	r, err := c.Hello("client.test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Lines, "DSN") {
		t.Fatalf("EHLO reply %q does not offer DSN", r)
	}
	for _, line := range []string{
		"MAIL FROM:<bob@example.net> RET=HDRS ENVID=QQ+2B314+3Dpi",
		"RCPT TO:<alice@example.org> NOTIFY=FAILURE,success ORCPT=rfc822;Alice+2Bbox@example.org",
		"RCPT TO:<carol@example.org>",
		"RCPT TO:<dave@example.org> NOTIFY=NEVER",
	} {
		if r, err := c.Cmd(line); err != nil || r.Code != 250 {
			t.Fatalf("%s: %v %v", line, r, err)
		}
	}
	if _, err := c.Data([]byte("Subject: dsn\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	msgs, err := srv.WaitMessages(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := smtpd.DSN{
		Return:     "HDRS",
		EnvelopeID: "QQ+314=pi",
		Recipients: []smtpd.DSNRecipient{
			{Notify: []string{"SUCCESS", "FAILURE"}, OriginalType: "rfc822", Original: "Alice+box@example.org"},
			{},
			{Notify: []string{"NEVER"}},
		},
	}
	if got := msgs[0].DSN; !reflect.DeepEqual(got, want) {
		t.Errorf("Message.DSN = %+v, want %+v", got, want)
	}
	var events []string
	for _, l := range msgs[0].Transcript() {
		if l.Kind == smtpd.KindEvent && strings.Contains(l.Text, "DSN") {
			events = append(events, l.Text)
		}
	}
	if len(events) != 3 || !strings.Contains(events[0], `envelope id "QQ+314=pi"`) ||
		!strings.Contains(events[0], "sends no notifications") ||
		!strings.Contains(events[1], `original recipient rfc822;"Alice+box@example.org"`) {
		t.Errorf("transcript DSN events = %q", events)
	}
}

// TestDSNWithoutParameters checks that a message sent without DSN
// parameters has a zero Message.DSN, with no Recipients slice.
func TestDSNWithoutParameters(t *testing.T) {
	srv := smtpdtest.NewServer(t)
	c := dialReady(t, srv.Addr, "client.test")
	if _, err := c.Mail("bob@example.net"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rcpt("alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Data([]byte("Subject: plain\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	msgs, err := srv.WaitMessages(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := msgs[0].DSN; got.Return != "" || got.EnvelopeID != "" || got.Recipients != nil {
		t.Errorf("Message.DSN = %+v, want the zero DSN", got)
	}
}

// TestDSNMalformed checks that each malformed DSN parameter gets
// 501 5.5.4 and changes nothing: the transaction goes on as if the command
// had not been sent.
func TestDSNMalformed(t *testing.T) {
	srv := smtpdtest.NewServer(t)
	c := dialReady(t, srv.Addr, "client.test")
	for _, line := range []string{
		"MAIL FROM:<bob@example.net> ENVID=a+4",       // "+" without two hex digits
		"MAIL FROM:<bob@example.net> ENVID=a+GG",      // not hex
		"MAIL FROM:<bob@example.net> ENVID=a=b",       // "=" is not xtext
		"MAIL FROM:<bob@example.net> ENVID=caf+C3+A9", // not ASCII once decoded
		"MAIL FROM:<bob@example.net> RET=BODY",
	} {
		if r, err := c.Cmd(line); err != nil || r.Code != 501 || r.Enhanced != "5.5.4" {
			t.Errorf("%s: got %v %v, want 501 5.5.4", line, r, err)
		}
	}
	if _, err := c.Mail("bob@example.net"); err != nil {
		t.Fatalf("MAIL after the refused ones: %v", err)
	}
	for _, line := range []string{
		"RCPT TO:<alice@example.org> ORCPT=rfc822;alice+2@example.org",
		"RCPT TO:<alice@example.org> ORCPT=alice@example.org", // no addr-type
		"RCPT TO:<alice@example.org> NOTIFY=NEVER,DELAY",
		"RCPT TO:<alice@example.org> NOTIFY=SOMETIMES",
	} {
		if r, err := c.Cmd(line); err != nil || r.Code != 501 || r.Enhanced != "5.5.4" {
			t.Errorf("%s: got %v %v, want 501 5.5.4", line, r, err)
		}
	}
	// No recipient was taken: DATA still wants one.
	if r, err := c.Cmd("DATA"); err != nil || r.Code != 503 {
		t.Errorf("DATA after refused recipients: got %v %v, want 503", r, err)
	}
}
