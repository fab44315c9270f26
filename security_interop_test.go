package smtpd_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
)

// STARTTLS, implicit TLS and AUTH with clients nobody here wrote: swaks
// (--tls, --tlsc, --auth) and curl (--ssl-reqd with smtp:// and smtps://,
// --user). Skipped when they are missing, failed with
// SMTPD_REQUIRE_PEERS=1 (CI).

// runPeerStatus runs a client program, bounded in time, and returns its
// exit status and output.
func runPeerStatus(t *testing.T, name string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %q: still running after 20s\n%s", name, args, out)
	}
	if exitErr, ok := err.(*exec.ExitError); ok {
		return exitErr.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return 0, string(out)
}

// swaksTLSServer starts a server with TLS, AUTH and the test user.
func swaksTLSServer(t *testing.T, cfg smtpd.Config) *secServer {
	t.Helper()
	cfg.TLSConfig = newTestPKI(t).server
	cfg.Authenticate = testUsers(t).Authenticate
	return startSec(t, cfg)
}

func TestInteropSwaksSecurity(t *testing.T) {
	swaks := requirePeer(t, "swaks", "swaks")
	// swaks needs Net::SSLeay for TLS (Debian: libnet-ssleay-perl).
	if out, err := exec.Command("perl", "-MNet::SSLeay", "-e", "1").CombinedOutput(); err != nil {
		if os.Getenv(peersEnv) == "1" {
			t.Fatalf("swaks cannot do TLS without Net::SSLeay (libnet-ssleay-perl): %s", out)
		}
		t.Skipf("swaks cannot do TLS without Net::SSLeay (libnet-ssleay-perl): %s", out)
	}
	tests := []struct {
		name     string
		cfg      smtpd.Config
		implicit bool
		args     []string
		ok       bool   // swaks exits 0 and the message is stored
		user     string // Message.AuthUser wanted
		output   string // in swaks's output
	}{
		{name: "STARTTLS", args: []string{"--tls"}, ok: true},
		{name: "implicit TLS", implicit: true, args: []string{"--tlsc"}, ok: true},
		{name: "AUTH PLAIN", args: []string{"--tls", "--auth", "PLAIN", "--auth-user", testUser, "--auth-password", testPassword}, ok: true, user: testUser},
		{name: "AUTH LOGIN", args: []string{"--tls", "--auth", "LOGIN", "--auth-user", testUser, "--auth-password", testPassword}, ok: true, user: testUser},
		{name: "AUTH LOGIN implicit", implicit: true, args: []string{"--tlsc", "--auth", "LOGIN", "--auth-user", testUser, "--auth-password", testPassword}, ok: true, user: testUser},
		{name: "AUTH PLAIN wrong password", args: []string{"--tls", "--auth", "PLAIN", "--auth-user", testUser, "--auth-password", "wrong"}, output: "535 5.7.8"},
		{name: "AUTH LOGIN wrong password", args: []string{"--tls", "--auth", "LOGIN", "--auth-user", testUser, "--auth-password", "wrong"}, output: "535 5.7.8"},
		{name: "AUTH without TLS", args: []string{"--auth", "PLAIN", "--auth-user", testUser, "--auth-password", testPassword}, output: "did not advertise authentication"},
		{name: "require-auth, no AUTH", cfg: smtpd.Config{RequireAuth: true}, args: []string{"--tls"}, output: "530 5.7.0 Authentication required"},
		{name: "require-auth, AUTH", cfg: smtpd.Config{RequireAuth: true}, args: []string{"--tls", "--auth", "PLAIN", "--auth-user", testUser, "--auth-password", testPassword}, ok: true, user: testUser},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := swaksTLSServer(t, tc.cfg)
			addr := ts.Addr
			if tc.implicit {
				addr = ts.TLSAddr
			}
			args := append([]string{
				"--server", addr,
				"--helo", "swaks.test",
				"--from", "bob@example.net",
				"--to", "alice@example.org",
				"--header", "Subject: swaks " + tc.name,
				"--body", "hello",
				"--timeout", "15",
			}, tc.args...)
			status, out := runPeerStatus(t, swaks, args...)
			if (status == 0) != tc.ok || !strings.Contains(out, tc.output) {
				t.Fatalf("swaks %q: status %d, want success %v and %q in its output:\n%s", tc.args, status, tc.ok, tc.output, out)
			}
			if !tc.ok {
				if n := len(ts.Messages()); n != 0 {
					t.Errorf("%d messages stored", n)
				}
				return
			}
			m := secOnlyMessage(t, ts.Server)
			if m.TLS == nil || m.AuthUser != tc.user {
				t.Errorf("Message.TLS = %v, AuthUser = %q; want TLS and %q", m.TLS != nil, m.AuthUser, tc.user)
			}
			mustNotContain(t, "server trace", ts.trace.bytes(), testPassword, b64(testPassword), plainResponse(testUser, testPassword))
		})
	}
}

func TestInteropCurlSecurity(t *testing.T) {
	curl := requirePeer(t, "curl", "curl")
	pki := newTestPKI(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pki.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: <bob@example.net>\r\nTo: <alice@example.org>\r\nSubject: curl TLS\r\n\r\nhello\r\n")
	tests := []struct {
		name   string
		scheme string // smtp (STARTTLS with --ssl-reqd) or smtps (implicit)
		args   []string
		user   string
	}{
		{"STARTTLS -k", "smtp", []string{"--ssl-reqd", "-k"}, ""},
		{"STARTTLS verified", "smtp", []string{"--ssl-reqd", "--cacert", ca}, ""},
		{"smtps -k", "smtps", []string{"-k"}, ""},
		{"STARTTLS AUTH", "smtp", []string{"--ssl-reqd", "-k", "--user", testUser + ":" + testPassword}, testUser},
		{"smtps AUTH LOGIN", "smtps", []string{"--cacert", ca, "--user", testUser + ":" + testPassword, "--login-options", "AUTH=LOGIN"}, testUser},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startSec(t, smtpd.Config{TLSConfig: pki.server, Authenticate: testUsers(t).Authenticate, RequireAuth: tc.user != ""})
			addr := ts.Addr
			if tc.scheme == "smtps" {
				addr = ts.TLSAddr
			}
			file := writeTemp(t, "msg.eml", msg)
			args := append([]string{"-sS", "--max-time", "15",
				"--url", tc.scheme + "://" + addr + "/curl.test",
				"--mail-from", "bob@example.net",
				"--mail-rcpt", "alice@example.org",
				"--upload-file", file}, tc.args...)
			if status, out := runPeerStatus(t, curl, args...); status != 0 {
				t.Fatalf("curl %q: status %d\n%s", args, status, out)
			}
			m := secOnlyMessage(t, ts.Server)
			if m.TLS == nil || m.AuthUser != tc.user {
				t.Errorf("Message.TLS = %v, AuthUser = %q; want TLS and %q", m.TLS != nil, m.AuthUser, tc.user)
			}
			if !bytes.Equal(m.Data, msg) {
				t.Errorf("stored %q, want %q", m.Data, msg)
			}
		})
	}
	// Without TLS on the server, --ssl-reqd refuses to send.
	t.Run("ssl-reqd without STARTTLS", func(t *testing.T) {
		ts := startSec(t, smtpd.Config{})
		status, out := runPeerStatus(t, curl, "-sS", "--max-time", "15", "--ssl-reqd",
			"--url", "smtp://"+ts.Addr+"/curl.test", "--mail-from", "bob@example.net",
			"--mail-rcpt", "alice@example.org", "--upload-file", writeTemp(t, "msg.eml", msg))
		if status == 0 || len(ts.Messages()) != 0 {
			t.Errorf("curl --ssl-reqd sent in clear (status %d):\n%s", status, out)
		}
	})
}
