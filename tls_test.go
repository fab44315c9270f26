package smtpd_test

import (
	"crypto/tls"
	"net"
	"net/smtp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
)

// STARTTLS (RFC 3207) and implicit TLS (RFC 8314) with Go's crypto/tls as
// the client, certificates checked against a test CA.

func TestSTARTTLS(t *testing.T) {
	pki := newTestPKI(t)
	ts := startSec(t, smtpd.Config{TLSConfig: pki.server, Authenticate: testUsers(t).Authenticate})
	c := secDial(t, ts.Addr, nil)
	c.TLSConfig = pki.client

	// In plain text: STARTTLS offered, AUTH neither offered nor accepted.
	kw := ehloKeywords(secCmd(t, c, "EHLO client.test", "250"))
	if !slices.Contains(kw, "STARTTLS") || slices.Contains(kw, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO before TLS offers %q, want STARTTLS and no AUTH", kw)
	}
	secCmd(t, c, "AUTH PLAIN", "538 5.7.11")

	if err := c.StartTLS(); err != nil {
		t.Fatal(err)
	}
	// RFC 3207 §4.2: everything from before TLS is forgotten.
	secCmd(t, c, "MAIL FROM:<bob@example.net>", "503 5.5.1")
	kw = ehloKeywords(secCmd(t, c, "EHLO client.test", "250"))
	if slices.Contains(kw, "STARTTLS") || !slices.Contains(kw, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO over TLS offers %q, want AUTH and no STARTTLS", kw)
	}
	secCmd(t, c, "STARTTLS", "503 5.5.1")
	secSend(t, c, "bob@example.net", "alice@example.org")

	m := secOnlyMessage(t, ts.Server)
	if m.TLS == nil || m.TLS.Version < tls.VersionTLS12 || !m.TLS.HandshakeComplete {
		t.Fatalf("Message.TLS = %+v, want a completed TLS 1.2+ handshake", m.TLS)
	}
	received := receivedField(t, m)
	for _, want := range []string{" with ESMTPS id ", "(using " + tls.VersionName(m.TLS.Version) + " with cipher " + tls.CipherSuiteName(m.TLS.CipherSuite) + ")"} {
		if !strings.Contains(received, want) {
			t.Errorf("Received field %q lacks %q", received, want)
		}
	}
	if !strings.Contains(string(ts.trace.bytes()), "TLS started: TLS 1.3") {
		t.Errorf("trace does not show the start of TLS:\n%s", string(ts.trace.bytes()))
	}
}

func TestImplicitTLS(t *testing.T) {
	pki := newTestPKI(t)
	ts := startSec(t, smtpd.Config{TLSConfig: pki.server, Authenticate: testUsers(t).Authenticate})
	// Go's net/smtp over a crypto/tls connection, with AUTH PLAIN.
	conn, err := tls.Dial("tcp", ts.TLSAddr, pki.client)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := smtp.NewClient(conn, "smtpd.test")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	// Being served, the listener is known.
	if ts.SMTP.TLSAddr() == nil || ts.SMTP.TLSAddr().String() != ts.TLSAddr {
		t.Fatalf("TLSAddr() = %v, want %s", ts.SMTP.TLSAddr(), ts.TLSAddr)
	}
	if ok, _ := sc.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered on the implicit TLS port")
	}
	if err := sc.Auth(smtp.PlainAuth("", testUser, testPassword, "smtpd.test")); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := sc.Mail("bob@example.net"); err != nil {
		t.Fatal(err)
	}
	if err := sc.Rcpt("alice@example.org"); err != nil {
		t.Fatal(err)
	}
	w, err := sc.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: implicit\r\n\r\nhi\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sc.Quit()

	m := secOnlyMessage(t, ts.Server)
	if m.TLS == nil || m.AuthUser != testUser {
		t.Fatalf("Message.TLS = %v, AuthUser = %q; want TLS and %q", m.TLS, m.AuthUser, testUser)
	}
	received := receivedField(t, m)
	// net/smtp sends SMTPUTF8 when offered: UTF8SMTPSA (RFC 6531 §3.7.3).
	if !strings.Contains(received, " with UTF8SMTPSA id ") || !strings.Contains(received, "(authenticated as alice)") {
		t.Errorf("Received field %q lacks ESMTPSA or the user", received)
	}
}

// TestSTARTTLSInjection sends commands behind STARTTLS in the same write
// (CVE-2011-0411): they were sent in plain text and must not run once TLS
// is up.
func TestSTARTTLSInjection(t *testing.T) {
	pki := newTestPKI(t)
	ts := startSec(t, smtpd.Config{TLSConfig: pki.server})
	c := secDial(t, ts.Addr, nil)
	c.TLSConfig = pki.client
	secCmd(t, c, "EHLO client.test", "250")
	injected := "STARTTLS\r\nRSET\r\nEHLO evil.test\r\nMAIL FROM:<evil@example.net>\r\n"
	if err := c.SendRaw([]byte(injected)); err != nil {
		t.Fatal(err)
	}
	secExpect(t, c, "220 2.0.0")
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	// Had the injected commands run over TLS, the first reply here
	// would be RSET's 250, and the EHLO evil.test would count.
	secCmd(t, c, "RCPT TO:<alice@example.org>", "503 5.5.1 Error: send HELO/EHLO first")
	secCmd(t, c, "EHLO client.test", "250")
	secCmd(t, c, "RCPT TO:<alice@example.org>", "503 5.5.1 Error: need MAIL")
	secSend(t, c, "bob@example.net", "alice@example.org")
	secCmd(t, c, "NOOP", "250 2.0.0")
	m := secOnlyMessage(t, ts.Server)
	if m.From != "bob@example.net" || m.Helo != "client.test" {
		t.Errorf("message from %q, HELO %q; the injected commands counted", m.From, m.Helo)
	}
	want := "discarded " + strconv.Itoa(len(injected)-len("STARTTLS\r\n")) + " octets sent after STARTTLS"
	if !strings.Contains(string(ts.trace.bytes()), want) {
		t.Errorf("trace lacks %q:\n%s", want, string(ts.trace.bytes()))
	}
}

func TestSTARTTLSRefused(t *testing.T) {
	pki := newTestPKI(t)
	ts := startSec(t, smtpd.Config{TLSConfig: pki.server})
	plain := startSec(t, smtpd.Config{})
	tests := []struct {
		name   string
		addr   string
		before []string
		line   string
		want   string
	}{
		{"not configured", plain.Addr, []string{"EHLO c"}, "STARTTLS", "502 5.5.1"},
		{"argument", ts.Addr, []string{"EHLO c"}, "STARTTLS now", "501 5.5.4"},
		{"before EHLO", ts.Addr, nil, "STARTTLS", "503 5.5.1"},
		{"in a transaction", ts.Addr, []string{"EHLO c", "MAIL FROM:<a@b.c>"}, "STARTTLS", "503 5.5.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := secDial(t, tc.addr, nil)
			for _, line := range tc.before {
				secCmd(t, c, line, "250")
			}
			secCmd(t, c, tc.line, tc.want)
			secCmd(t, c, "NOOP", "250") // the session goes on, in plain text
		})
	}
	// Not configured: EHLO does not offer it.
	c := secDial(t, plain.Addr, nil)
	if kw := ehloKeywords(secCmd(t, c, "EHLO c", "250")); slices.Contains(kw, "STARTTLS") {
		t.Errorf("EHLO offers STARTTLS without a TLSConfig: %q", kw)
	}
}

func TestTLSVersionAndTickets(t *testing.T) {
	pki := newTestPKI(t)
	ts := startSec(t, smtpd.Config{TLSConfig: pki.server})
	tickets := startSec(t, smtpd.Config{TLSConfig: pki.server, TLSSessionTickets: true})
	if pki.server.MinVersion != 0 || pki.server.SessionTicketsDisabled {
		t.Error("NewServer changed the caller's tls.Config")
	}

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		old := pki.client.Clone()
		old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if c, err := client.DialTLS(ts.TLSAddr, old); err == nil {
			c.Close()
			t.Error("implicit TLS: a TLS 1.1 handshake succeeded")
		}
		c := secDial(t, ts.Addr, nil)
		c.TLSConfig = old
		secCmd(t, c, "EHLO c", "250")
		if err := c.StartTLS(); err == nil {
			t.Error("STARTTLS: a TLS 1.1 handshake succeeded")
		}
	})

	// resumed connects twice with one session cache and reports whether
	// the second handshake resumed the first session.
	resumed := func(t *testing.T, addr string) bool {
		cfg := pki.client.Clone()
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		var did bool
		for range 2 {
			c := secDial(t, addr, cfg) // reading the greeting takes in the tickets
			did = c.Conn().(*tls.Conn).ConnectionState().DidResume
			c.Close()
		}
		return did
	}
	t.Run("tickets off by default", func(t *testing.T) {
		if resumed(t, ts.TLSAddr) {
			t.Error("a TLS session was resumed")
		}
	})
	t.Run("tickets on when asked", func(t *testing.T) {
		if !resumed(t, tickets.TLSAddr) {
			t.Error("TLSSessionTickets: no TLS session was resumed")
		}
	})
}

func TestTLSConfigChecked(t *testing.T) {
	cfg := smtpd.Config{DataDir: t.TempDir(), TLSConfig: &tls.Config{}}
	if _, err := smtpd.NewServer(cfg); err == nil || !strings.Contains(err.Error(), "TLSConfig") {
		t.Errorf("NewServer with a TLSConfig without certificate: %v", err)
	}
	srv, err := smtpd.NewServer(smtpd.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := srv.ServeTLS(l); err == nil || !strings.Contains(err.Error(), "TLSConfig") {
		t.Errorf("ServeTLS without a TLSConfig = %v", err)
	}
}

// TestHandshakeTimeout: a client that opens the TLS port, or says
// STARTTLS, and then nothing, is dropped after the command timeout, and the
// accept loop serves others meanwhile.
func TestHandshakeTimeout(t *testing.T) {
	pki := newTestPKI(t)
	ts := startSec(t, smtpd.Config{TLSConfig: pki.server, CommandTimeout: 300 * time.Millisecond})

	silent, err := net.Dial("tcp", ts.TLSAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	// Meanwhile another client is served at once.
	secDial(t, ts.TLSAddr, pki.client)
	silent.SetReadDeadline(time.Now().Add(secWait))
	if n, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatalf("silent client got %d octets, want the connection closed", n)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("silent TLS client dropped after %v, want about 300ms", d)
	}

	c := secDial(t, ts.Addr, nil)
	secCmd(t, c, "EHLO c", "250")
	secCmd(t, c, "STARTTLS", "220")
	start = time.Now()
	secExpectEOF(t, c)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("client silent after STARTTLS dropped after %v, want about 300ms", d)
	}
}

// TestShutdownTLS: Shutdown wakes an idle TLS session, which says
// 421 4.3.2 over TLS, and lets a TLS transaction finish first.
func TestShutdownTLS(t *testing.T) {
	pki := newTestPKI(t)
	ts := startSec(t, smtpd.Config{TLSConfig: pki.server})
	idle := secDial(t, ts.TLSAddr, pki.client)
	secCmd(t, idle, "EHLO idle.test", "250")
	busy := secDial(t, ts.Addr, nil)
	busy.TLSConfig = pki.client
	secCmd(t, busy, "EHLO busy.test", "250")
	if err := busy.StartTLS(); err != nil {
		t.Fatal(err)
	}
	secCmd(t, busy, "EHLO busy.test", "250")
	secCmd(t, busy, "MAIL FROM:<bob@example.net>", "250")

	done := make(chan error, 1)
	go func() { done <- ts.SMTP.Shutdown(t.Context()) }()
	secExpect(t, idle, "421 4.3.2")
	secExpectEOF(t, idle)
	secCmd(t, busy, "RCPT TO:<alice@example.org>", "250")
	if r, err := busy.Data([]byte("Subject: finishing\r\n\r\nx\r\n")); err != nil || r.Code != 250 {
		t.Fatalf("DATA during shutdown: %v %v", r, err)
	}
	secExpect(t, busy, "421 4.3.2")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(secWait):
		t.Fatal("Shutdown still waiting")
	}
	if m := secOnlyMessage(t, ts.Server); m.TLS == nil {
		t.Error("message stored without its TLS state")
	}
}

// TestTLSPortOverLimit: over MaxConns or MaxConnsPerIP, the implicit TLS
// port closes the connection without a plain-text reply (which would only
// be a TLS protocol error to the client) and without a handshake.
func TestTLSPortOverLimit(t *testing.T) {
	pki := newTestPKI(t)
	for _, cfg := range []smtpd.Config{
		{TLSConfig: pki.server, MaxConns: 1},
		{TLSConfig: pki.server, MaxConnsPerIP: 1},
	} {
		ts := startSec(t, cfg)
		secDial(t, ts.Addr, nil) // holds the only slot
		conn, err := net.Dial("tcp", ts.TLSAddr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(secWait))
		tc := tls.Client(conn, pki.client)
		if err := tc.Handshake(); err == nil {
			t.Errorf("MaxConns %d, MaxConnsPerIP %d: handshake over the limit succeeded", cfg.MaxConns, cfg.MaxConnsPerIP)
		} else if strings.Contains(err.Error(), "first record does not look like a TLS handshake") {
			t.Errorf("got a plain-text reply on the TLS port: %v", err)
		}
		conn.Close()
	}
}
