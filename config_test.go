package smtpd_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// TestConfigReadOnce: a running server keeps the Config it started with.
// Changing srv.Config after Serve began, and the slices it held, changes
// nothing, and under -race it is no data race: sessions, the management
// protocol and Close read the server's own copy.
func TestConfigReadOnce(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	key := bytes.Repeat([]byte{7}, 32)
	originalKey := slices.Clone(key)
	ts := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{ProxyFrom: proxies, MetricsKey: key}))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsDone := make(chan error, 1)
	go func() { metricsDone <- ts.SMTP.ServeMetrics(pc) }()

	// Everything a session, the management protocol or Close would read.
	stateFile := filepath.Join(t.TempDir(), "state")
	c := &ts.SMTP.Config
	c.StrictCRLF = true
	c.RequireAuth = true
	c.Authenticate = func(context.Context, string, string) error { return nil }
	c.AllowInsecureAuth = true
	c.TestMode = true
	c.Delivered = func(*smtpd.Message) { t.Error("the Delivered set after start was called") }
	c.Filter = smtpd.FilterFunc(func(context.Context, *smtpd.Message, io.Reader, io.Writer) error {
		return &smtpd.Rejection{Reason: "the Filter set after start ran"}
	})
	c.StateFile = stateFile
	proxies[0] = netip.MustParsePrefix("127.0.0.0/8") // the caller's slice
	key[0] ^= 0xff                                    // the caller's key

	cl, err := client.Dial(ts.Addr)
	if err != nil {
		t.Fatal(err) // with 127.0.0.0/8 trusted, the server would wait for a PROXY header
	}
	defer cl.Close()
	if _, err := cl.Greeting(); err != nil {
		t.Fatal(err)
	}
	ehlo, err := cl.Hello("client.test")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ehlo.String(), "AUTH") {
		t.Errorf("EHLO offers AUTH:\n%s", ehlo)
	}
	if err := cl.SendRaw([]byte("NOOP\n")); err != nil { // StrictCRLF would refuse it
		t.Fatal(err)
	}
	if r, err := cl.ReadReply(); err != nil || r.Code != 250 {
		t.Errorf("NOOP ended by a bare LF: %v %v, want 250", r, err)
	}
	// RequireAuth would say 530, TestMode would ignore the unknown parameter.
	if r, err := cl.Cmd("MAIL FROM:<bob@example.net> X-UNKNOWN=1"); err != nil || r.Code != 555 {
		t.Errorf("MAIL with an unknown parameter: %v %v, want 555", r, err)
	}
	if _, err := cl.Mail("bob@example.net"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Rcpt("alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Data([]byte("Subject: once\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err) // the Filter would refuse it
	}
	if n := len(ts.Messages()); n != 1 {
		t.Errorf("smtpdtest's Delivered saw %d messages, want 1", n)
	}

	mc, err := smtpd.DialMetrics(pc.LocalAddr().String(), originalKey)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if on, err := mc.Filter(t.Context()); err != nil || on {
		t.Errorf("management protocol with the original key: filter %v, %v; want off, no error", on, err)
	}

	ts.Close()
	if err := <-metricsDone; err != smtpd.ErrServerClosed {
		t.Errorf("ServeMetrics returned %v", err)
	}
	if _, err := os.Stat(stateFile); !os.IsNotExist(err) {
		t.Errorf("the StateFile set after start was written (%v)", err)
	}
}
