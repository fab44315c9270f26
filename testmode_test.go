package smtpd_test

import (
	"net/smtp"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// saslAuth lets net/smtp authenticate with a go-sasl client.
type saslAuth struct{ sasl.Client }

func (a saslAuth) Start(*smtp.ServerInfo) (string, []byte, error) { return a.Client.Start() }

func (a saslAuth) Next(challenge []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	return a.Client.Next(challenge)
}

// TestTestModeAuthorizationIdentity: in test mode, PLAIN with an
// authorization identity other than the user (RFC 4616 §2: "proxyuser"
// acting for "admin") is accepted, at once, and recorded.
func TestTestModeAuthorizationIdentity(t *testing.T) {
	srv := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{TestMode: true}))
	auth := saslAuth{sasl.NewPlainClient("admin", "proxyuser", "pw")}
	if err := smtp.SendMail(srv.Addr, auth, "app@example.net", []string{"alice@example.org"}, []byte("Subject: hi\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.AuthUser != "proxyuser" || m.AuthzID != "admin" || m.AuthPassword != "pw" {
		t.Errorf("AuthUser, AuthzID, AuthPassword = %q, %q, %q; want proxyuser, admin, pw", m.AuthUser, m.AuthzID, m.AuthPassword)
	}
	var dialogue strings.Builder
	for _, line := range m.Transcript() {
		dialogue.WriteString(line.String() + "\n")
	}
	if want := "* authenticated as proxyuser, acting for admin\n"; !strings.Contains(dialogue.String(), want) {
		t.Errorf("transcript lacks %q:\n%s", want, dialogue.String())
	}
}
