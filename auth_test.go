package smtpd_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
)

// SMTP AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN.

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// plainResponse is the PLAIN response for user and password.
func plainResponse(user, password string) string { return b64("\x00" + user + "\x00" + password) }

// authTLS returns a client that has done STARTTLS and EHLO on a server
// with testUsers.
func authTLS(t *testing.T, cfg smtpd.Config) (*secServer, *client.Client) {
	t.Helper()
	pki := newTestPKI(t)
	cfg.TLSConfig = pki.server
	if cfg.Authenticate == nil {
		cfg.Authenticate = testUsers(t).Authenticate
	}
	ts := startSec(t, cfg)
	c := secDial(t, ts.Addr, nil)
	c.TLSConfig = pki.client
	secCmd(t, c, "EHLO client.test", "250")
	if err := c.StartTLS(); err != nil {
		t.Fatal(err)
	}
	secCmd(t, c, "EHLO client.test", "250")
	return ts, c
}

func TestAuthSuccess(t *testing.T) {
	tests := []struct {
		name  string
		steps [][2]string // line to send, reply wanted
	}{
		{"PLAIN initial response", [][2]string{{"AUTH PLAIN " + plainResponse(testUser, testPassword), "235 2.7.0"}}},
		{"PLAIN after a challenge", [][2]string{{"AUTH PLAIN", "334 "}, {plainResponse(testUser, testPassword), "235 2.7.0"}}},
		{"PLAIN with authorization identity", [][2]string{{"AUTH PLAIN " + b64(testUser+"\x00"+testUser+"\x00"+testPassword), "235 2.7.0"}}},
		{"plain in lower case", [][2]string{{"auth plain " + plainResponse(testUser, testPassword), "235 2.7.0"}}},
		{"LOGIN", [][2]string{{"AUTH LOGIN", "334 VXNlcm5hbWU6"}, {b64(testUser), "334 UGFzc3dvcmQ6"}, {b64(testPassword), "235 2.7.0"}}},
		{"LOGIN initial response", [][2]string{{"AUTH LOGIN " + b64(testUser), "334 UGFzc3dvcmQ6"}, {b64(testPassword), "235 2.7.0"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, c := authTLS(t, smtpd.Config{})
			for _, st := range tc.steps {
				secCmd(t, c, st[0], st[1])
			}
			secSend(t, c, "bob@example.net", "alice@example.org")
			m := secOnlyMessage(t, ts.Server)
			if m.AuthUser != testUser {
				t.Errorf("Message.AuthUser = %q, want %q", m.AuthUser, testUser)
			}
			received := receivedField(t, m)
			for _, want := range []string{"\n\t(authenticated as alice)\n", " with ESMTPSA id "} {
				if !strings.Contains(received, want) {
					t.Errorf("Received field %q lacks %q", received, want)
				}
			}
			log, err := os.ReadFile(filepath.Join(ts.DataDir, "access.log"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(log, []byte(`"tls":"TLS 1.3","user":"alice"}`)) {
				t.Errorf("access log lacks the TLS version and the user: %s", log)
			}
		})
	}
}

func TestAuthFailure(t *testing.T) {
	const delay = 200 * time.Millisecond
	ts, c := authTLS(t, smtpd.Config{AuthFailureDelay: delay})
	attempts := [][][2]string{
		{{"AUTH PLAIN " + plainResponse(testUser, "wrong"), "535 5.7.8"}},
		{{"AUTH LOGIN", "334"}, {b64("mallory"), "334"}, {b64(testPassword), "535 5.7.8"}},
		// The third failure ends the session.
		{{"AUTH PLAIN " + b64("bob\x00"+testUser+"\x00"+testPassword), "421 4.7.0"}},
	}
	for _, steps := range attempts {
		start := time.Now()
		for _, st := range steps {
			secCmd(t, c, st[0], st[1])
		}
		if d := time.Since(start); d < delay {
			t.Errorf("failure answered after %v, want at least %v", d, delay)
		}
	}
	secExpectEOF(t, c)
	if n := len(ts.Messages()); n != 0 {
		t.Errorf("%d messages stored", n)
	}
	logs := ts.logs.bytes()
	if got := bytes.Count(logs, []byte("authentication failed")); got != 3 {
		t.Errorf("%d authentication failures logged, want 3:\n%s", got, logs)
	}
}

func TestAuthRefused(t *testing.T) {
	tests := []struct {
		name   string
		before []string // sent first, each wanting a 2xx or 3xx
		steps  [][2]string
	}{
		{"unknown mechanism", nil, [][2]string{{"AUTH CRAM-MD5", "504 5.5.4"}}},
		{"no mechanism", nil, [][2]string{{"AUTH", "501 5.5.4"}}},
		{"bad base64 initial response", nil, [][2]string{{"AUTH PLAIN !!!", "501 5.5.2"}}},
		{"bad base64 response", nil, [][2]string{{"AUTH LOGIN", "334"}, {"not base64", "501 5.5.2"}}},
		{"bare CR in base64", nil, [][2]string{{"AUTH LOGIN", "334"}, {"YWxp\rY2U=", "501 5.5.2"}}},
		{"cancelled", nil, [][2]string{{"AUTH LOGIN", "334"}, {b64(testUser), "334"}, {"*", "501 5.7.0"}}},
		{"empty initial response", nil, [][2]string{{"AUTH PLAIN =", "535 5.7.8"}}},
		{"during a transaction", []string{"MAIL FROM:<bob@example.net>"}, [][2]string{{"AUTH PLAIN " + plainResponse(testUser, testPassword), "503 5.5.1"}}},
		{"after AUTH", []string{"AUTH PLAIN " + plainResponse(testUser, testPassword)}, [][2]string{{"AUTH PLAIN " + plainResponse(testUser, testPassword), "503 5.5.1"}}},
		{"line too long", nil, [][2]string{{"AUTH PLAIN " + strings.Repeat("QUFB", 150), "500 5.5.2"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, c := authTLS(t, smtpd.Config{})
			for _, line := range tc.before {
				r, err := c.Cmd(line)
				if err != nil || r.Class() > 3 {
					t.Fatalf("%s: %v %v", line, r, err)
				}
			}
			for _, st := range tc.steps {
				if strings.Contains(st[0], "\r") { // the client's Send refuses it
					c.SendRaw([]byte(st[0] + "\r\n"))
					secExpect(t, c, st[1])
					continue
				}
				secCmd(t, c, st[0], st[1])
			}
			secCmd(t, c, "NOOP", "250") // the session goes on
		})
	}
	t.Run("before EHLO", func(t *testing.T) {
		ts := startSec(t, smtpd.Config{Authenticate: testUsers(t).Authenticate, AllowInsecureAuth: true})
		c := secDial(t, ts.Addr, nil)
		secCmd(t, c, "AUTH PLAIN", "503 5.5.1")
		secCmd(t, c, "HELO client.test", "250")
		secCmd(t, c, "AUTH PLAIN", "503 5.5.1 Error: send EHLO first")
	})
	t.Run("not configured", func(t *testing.T) {
		ts := startSec(t, smtpd.Config{})
		c := secDial(t, ts.Addr, nil)
		if kw := ehloKeywords(secCmd(t, c, "EHLO c", "250")); slices.ContainsFunc(kw, func(k string) bool { return strings.HasPrefix(k, "AUTH") }) {
			t.Errorf("EHLO offers AUTH without Authenticate: %q", kw)
		}
		secCmd(t, c, "AUTH PLAIN", "502 5.5.1")
	})
}

// TestAuthInsecure: without TLS, AUTH is neither offered nor accepted,
// unless AllowInsecureAuth says so.
func TestAuthInsecure(t *testing.T) {
	users := testUsers(t).Authenticate
	strict := startSec(t, smtpd.Config{Authenticate: users})
	c := secDial(t, strict.Addr, nil)
	if kw := ehloKeywords(secCmd(t, c, "EHLO c", "250")); slices.Contains(kw, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO offers AUTH in plain text: %q", kw)
	}
	secCmd(t, c, "AUTH PLAIN "+plainResponse(testUser, testPassword), "538 5.7.11 Encryption required")

	lax := startSec(t, smtpd.Config{Authenticate: users, AllowInsecureAuth: true})
	c = secDial(t, lax.Addr, nil)
	if kw := ehloKeywords(secCmd(t, c, "EHLO c", "250")); !slices.Contains(kw, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO does not offer AUTH with AllowInsecureAuth: %q", kw)
	}
	secCmd(t, c, "AUTH PLAIN "+plainResponse(testUser, testPassword), "235 2.7.0")
	secSend(t, c, "bob@example.net", "alice@example.org")
	if received := receivedField(t, secOnlyMessage(t, lax.Server)); !strings.Contains(received, " with ESMTPA id ") {
		t.Errorf("Received field %q lacks ESMTPA", received)
	}
}

func TestRequireAuth(t *testing.T) {
	ts, c := authTLS(t, smtpd.Config{RequireAuth: true})
	secCmd(t, c, "MAIL FROM:<bob@example.net>", "530 5.7.0 Authentication required")
	secCmd(t, c, "AUTH PLAIN "+plainResponse(testUser, testPassword), "235")
	secSend(t, c, "bob@example.net", "alice@example.org")
	secOnlyMessage(t, ts.Server)

	// In plain text, the client is told to start TLS first.
	plain := secDial(t, ts.Addr, nil)
	secCmd(t, plain, "EHLO c", "250")
	secCmd(t, plain, "MAIL FROM:<bob@example.net>", "530 5.7.0 Must issue a STARTTLS command first")

	if _, err := smtpd.NewServer(smtpd.Config{DataDir: t.TempDir(), RequireAuth: true}); err == nil {
		t.Error("NewServer accepted RequireAuth without Authenticate")
	}
}

// TestAuthBackendError: an Authenticate error other than ErrAuthFailed is a
// temporary failure, logged, and not counted as a bad password.
func TestAuthBackendError(t *testing.T) {
	calls := 0
	ts, c := authTLS(t, smtpd.Config{Authenticate: func(ctx context.Context, user, password string) error {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("Authenticate got a context without a deadline")
		}
		return errors.New("user database unreachable")
	}})
	for range 4 {
		secCmd(t, c, "AUTH PLAIN "+plainResponse(testUser, testPassword), "454 4.7.0")
	}
	if calls != 4 {
		t.Errorf("Authenticate called %d times, want 4", calls)
	}
	if !bytes.Contains(ts.logs.bytes(), []byte("user database unreachable")) {
		t.Errorf("backend error not logged:\n%s", ts.logs.bytes())
	}
}

// TestAuthRedaction: credentials appear in no trace, log, transcript or
// reply, whichever way they are sent, right or wrong.
func TestAuthRedaction(t *testing.T) {
	var transcript bytes.Buffer
	ts, c := authTLS(t, smtpd.Config{MaxAuthFailures: 10})
	c.Transcript = &transcript
	const wrong = "N0t-The-Password"
	steps := [][2]string{
		{"AUTH PLAIN " + plainResponse(testUser, wrong), "535"},
		{"AUTH PLAIN", "334"}, {plainResponse(testUser, wrong), "535"},
		{"AUTH LOGIN", "334"}, {b64(testUser), "334"}, {b64(wrong), "535"},
		{"AUTH LOGIN " + b64(testUser), "334"}, {b64(testPassword), "235"},
	}
	for _, st := range steps {
		secCmd(t, c, st[0], st[1])
	}
	// The raw form, as a dialogue's R: step sends it, too.
	c2 := secDial(t, ts.Addr, nil)
	c2.Transcript = &transcript
	c2.SendRaw([]byte("EHLO c\r\nAUTH PLAIN " + plainResponse(testUser, wrong) + "\r\n"))
	c2.ReadReply()
	c2.ReadReply()

	secrets := []string{testPassword, wrong, b64(testPassword), b64(wrong), plainResponse(testUser, testPassword), plainResponse(testUser, wrong)}
	trace := ts.trace.bytes()
	mustNotContain(t, "server trace", trace, secrets...)
	mustNotContain(t, "server log", ts.logs.bytes(), secrets...)
	mustNotContain(t, "client transcript", transcript.Bytes(), secrets...)
	for _, want := range []string{"C: AUTH PLAIN <redacted>", "C: <redacted>", "C: AUTH LOGIN <redacted>"} {
		if !bytes.Contains(trace, []byte(want)) {
			t.Errorf("server trace lacks %q:\n%s", want, trace)
		}
		if !bytes.Contains(transcript.Bytes(), []byte(want)) {
			t.Errorf("client transcript lacks %q:\n%s", want, transcript.Bytes())
		}
	}
}

func TestParseUsers(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hash := string(h)
	good := "# users\n\nalice:" + hash + "\n  bob:" + hash + "  \n"
	users, err := smtpd.ParseUsers(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := users.Authenticate(ctx, "bob", "secret"); err != nil {
		t.Errorf("bob, right password: %v", err)
	}
	for _, bad := range [][2]string{{"bob", "Secret"}, {"carol", "secret"}, {"alice", ""}, {"", "secret"}} {
		if err := users.Authenticate(ctx, bad[0], bad[1]); !errors.Is(err, smtpd.ErrAuthFailed) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrAuthFailed", bad[0], bad[1], err)
		}
	}
	tests := []struct{ file, want string }{
		{"alice\n", "line 1: want user:bcrypt-hash"},
		{"# ok\nalice:" + hash + "\nbob:plaintext\n", `line 3: user "bob": not a bcrypt hash`},
		{"alice:" + hash + "\nalice:" + hash + "\n", `line 2: user "alice" listed twice`},
		{":" + hash + "\n", "line 1: bad user name"},
		{"al ice:" + hash + "\n", "line 1: bad user name"},
	}
	for _, tc := range tests {
		if _, err := smtpd.ParseUsers(strings.NewReader(tc.file)); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("ParseUsers(%q) = %v, want %q…", tc.file, err, tc.want)
		}
	}
}
