package smtpd_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// Helpers shared by the security tests (tls_test.go, auth_test.go,
// limits_test.go, proxy_test.go, security_interop_test.go).

// secWait bounds every wait of the security tests.
const secWait = 10 * time.Second

// testPKI is a test certificate authority and a server certificate it
// signed for smtpd.test, localhost and 127.0.0.1, so that the tests verify
// certificates for real instead of skipping the check.
type testPKI struct {
	server *tls.Config // the server's certificate
	client *tls.Config // trusts the CA, expects smtpd.test
	caPEM  []byte
}

func newTestPKI(t testing.TB) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtpd test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "smtpd.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"smtpd.test", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		server: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, caDER}, PrivateKey: key}}},
		client: &tls.Config{RootCAs: pool, ServerName: "smtpd.test"},
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}
}

// The user of the AUTH tests.
const (
	testUser     = "alice"
	testPassword = "Tr0ub4dor&3 horse"
)

// testUsers returns a users table with testUser. The hash is made with
// bcrypt's lowest cost so that the tests stay fast.
func testUsers(t testing.TB) smtpd.Users {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users, err := smtpd.ParseUsers(strings.NewReader("# test users\n" + testUser + ":" + string(hash) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return users
}

// secServer is a test server with the trace and the logs kept for
// inspection.
type secServer struct {
	*smtpdtest.Server
	trace *syncBuffer
	logs  *syncBuffer
}

// startSec starts a server with cfg; unset fields get: hostname
// smtpd.test, a trace and logs captured in buffers, and a short AUTH delay.
func startSec(t *testing.T, cfg smtpd.Config) *secServer {
	t.Helper()
	trace, logs := newSyncBuffer(), newSyncBuffer()
	if cfg.Trace == nil {
		cfg.Trace = trace
		cfg.Verbose = true
		cfg.TraceColor = smtpd.ColorNever
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), nil))
	}
	if cfg.AuthFailureDelay == 0 {
		cfg.AuthFailureDelay = time.Millisecond
	}
	return &secServer{Server: smtpdtest.NewServer(t, smtpdtest.Config(cfg)), trace: trace, logs: logs}
}

// secDial connects to addr (implicit TLS with tlsConfig when it is not
// nil), reads the greeting and checks it is 220.
func secDial(t *testing.T, addr string, tlsConfig *tls.Config) *client.Client {
	t.Helper()
	var (
		c   *client.Client
		err error
	)
	if tlsConfig != nil {
		c, err = client.DialTLS(addr, tlsConfig)
	} else {
		c, err = client.Dial(addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Timeout = secWait
	c.TLSConfig = tlsConfig
	if _, err := c.Greeting(); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return c
}

// secCmd sends line and fails the test unless the reply starts with want
// ("250", "535 5.7.8").
func secCmd(t *testing.T, c *client.Client, line, want string) *client.Reply {
	t.Helper()
	r, err := c.Cmd(line)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	if !strings.HasPrefix(r.String(), want) {
		t.Fatalf("%s: got %q, want %q…", line, r.String(), want)
	}
	return r
}

// secExpect reads a reply and fails unless it starts with want.
func secExpect(t *testing.T, c *client.Client, want string) *client.Reply {
	t.Helper()
	r, err := c.ReadReply()
	if err != nil {
		t.Fatalf("reading reply (want %q): %v", want, err)
	}
	if !strings.HasPrefix(r.String(), want) {
		t.Fatalf("got %q, want %q…", r.String(), want)
	}
	return r
}

// secExpectEOF fails unless the server closes the connection (within secWait)
// without saying more.
func secExpectEOF(t *testing.T, c *client.Client) {
	t.Helper()
	r, err := c.ReadReply()
	if err == nil {
		t.Fatalf("got reply %q, want the connection closed", r.String())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", secWait)
	}
}

// secSend runs a transaction and returns the 250 reply to the data.
func secSend(t *testing.T, c *client.Client, from, to string) {
	t.Helper()
	secCmd(t, c, "MAIL FROM:<"+from+">", "250 2.1.0")
	secCmd(t, c, "RCPT TO:<"+to+">", "250 2.1.5")
	if r, err := c.Data([]byte("Subject: security test\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("DATA: %v", err)
	} else if r.Code != 250 {
		t.Fatalf("DATA: %q", r.String())
	}
}

// ehloKeywords returns the keywords of an EHLO reply (the lines after the
// first).
func ehloKeywords(r *client.Reply) []string { return r.Lines[1:] }

// secOnlyMessage waits for the one message a test sent and returns it.
func secOnlyMessage(t *testing.T, ts *smtpdtest.Server) *smtpd.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), secWait)
	defer cancel()
	msgs, err := ts.WaitMessages(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	return msgs[0]
}

// receivedField returns the Received field of a stored message.
func receivedField(t *testing.T, m *smtpd.Message) string {
	t.Helper()
	if len(m.Paths) == 0 {
		t.Fatal("message has no stored file")
	}
	stored, err := os.ReadFile(m.Paths[0])
	if err != nil {
		t.Fatal(err)
	}
	_, received, _ := splitTraceFields(t, stored)
	return received
}

// mustNotContain fails if any of secrets appears in what.
func mustNotContain(t *testing.T, name string, what []byte, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Contains(what, []byte(s)) {
			t.Errorf("%s contains the secret %q:\n%s", name, s, what)
		}
	}
}
