package smtpd_test

import (
	"net/smtp"
	"testing"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// mimeMessage is what a mail client sends, here with the attachment
// first: an RFC 2047 subject and sender name, a base64 attachment with an
// RFC 2231 file name, and quoted-printable Latin-1 text before base64 HTML.
const mimeMessage = "From: =?UTF-8?Q?Jos=C3=A9?= <jose@example.net>\r\n" +
	"Subject: =?UTF-8?Q?caf=C3=A9?= at ten\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"==b1\"\r\n" +
	"\r\n" +
	"--==b1\r\n" +
	"Content-Type: application/pdf; name=\"=?UTF-8?Q?men=C3=BA.pdf?=\"\r\n" +
	"Content-Disposition: attachment; filename*=UTF-8''men%C3%BA.pdf\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"JVBERi0xLjQK\r\n" +
	"--==b1\r\n" +
	"Content-Type: multipart/alternative; boundary=\"==b2\"\r\n" +
	"\r\n" +
	"--==b2\r\n" +
	"Content-Type: text/plain; charset=ISO-8859-1\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Caf=E9 at ten.\r\n" +
	"--==b2\r\n" +
	"Content-Type: text/html; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PHA+Q2Fmw6kgYXQgdGVuLjwvcD4=\r\n" +
	"--==b2--\r\n" +
	"--==b1--\r\n"

func TestMessageMIME(t *testing.T) {
	srv := smtpdtest.NewServer(t)
	if err := smtp.SendMail(srv.Addr, nil, "jose@example.net", []string{"alice@example.org"}, []byte(mimeMessage)); err != nil {
		t.Fatal(err)
	}
	m := srv.Messages()[0]
	if got, want := m.DecodedHeader("Subject"), "café at ten"; got != want {
		t.Errorf("DecodedHeader(Subject) = %q, want %q", got, want)
	}
	if got, want := m.DecodedHeader("From"), "José <jose@example.net>"; got != want {
		t.Errorf("DecodedHeader(From) = %q, want %q", got, want)
	}
	if got, want := m.Header().Get("Subject"), "=?UTF-8?Q?caf=C3=A9?= at ten"; got != want {
		t.Errorf("Header().Get(Subject) = %q, want it as sent, %q", got, want)
	}
	if got, want := m.Text(), "Café at ten."; got != want {
		t.Errorf("Text() = %q, want %q", got, want)
	}
	if got, want := m.HTML(), "<p>Café at ten.</p>"; got != want {
		t.Errorf("HTML() = %q, want %q", got, want)
	}
	att := m.Attachments()
	if len(att) != 1 || att[0].Filename != "menú.pdf" || att[0].ContentType != "application/pdf" || string(att[0].Data) != "%PDF-1.4\n" {
		t.Errorf("Attachments() = %+v, want menú.pdf, application/pdf, %%PDF-1.4", att)
	}
}

// TestMessageMIMEPlain: messages without MIME structure are plain text,
// those without a header section too.
func TestMessageMIMEPlain(t *testing.T) {
	tests := []struct{ name, data, text string }{
		{"no Content-Type", "Subject: hi\r\n\r\nHello.\r\n", "Hello.\r\n"},
		{"no header section", "Hello, no headers.\r\n", "Hello, no headers.\r\n"},
		{"no body", "Subject: hi\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &smtpd.Message{Data: []byte(tt.data)}
			if got := m.Text(); got != tt.text {
				t.Errorf("Text() = %q, want %q", got, tt.text)
			}
			if m.HTML() != "" || m.Attachments() != nil {
				t.Errorf("HTML() = %q, Attachments() = %v; want none", m.HTML(), m.Attachments())
			}
		})
	}
	if (&smtpd.Message{}).Text() != "" {
		t.Error("Text() of a message without Data is not empty")
	}
}
