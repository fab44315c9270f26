package smtpd_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
)

// The PROXY protocol (HAProxy, versions 1 and 2) from trusted addresses.

// proxyV2Header builds a version 2 PROXY header for TCP from src to dst,
// with a TLV the server must skip.
func proxyV2Header(src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21")
	var addrs []byte
	if src.Addr().Is4() {
		b = append(b, 0x11)
		s, d := src.Addr().As4(), dst.Addr().As4()
		addrs = append(append(addrs, s[:]...), d[:]...)
	} else {
		b = append(b, 0x21)
		s, d := src.Addr().As16(), dst.Addr().As16()
		addrs = append(append(addrs, s[:]...), d[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
	addrs = binary.BigEndian.AppendUint16(addrs, dst.Port())
	tlv := []byte{0x05, 0, 4, 'u', 'n', 'i', 'q'} // PP2_TYPE_UNIQUE_ID
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+len(tlv)))
	return append(append(b, addrs...), tlv...)
}

// proxied connects as a trusted proxy, sends header and returns the client
// with the greeting read.
func proxied(t *testing.T, addr string, header []byte) *client.Client {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Timeout = secWait
	if err := c.SendRaw(header); err != nil {
		t.Fatal(err)
	}
	secExpect(t, c, "220")
	return c
}

var trustLoopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func TestProxyProtocol(t *testing.T) {
	tests := []struct {
		name     string
		header   []byte
		remote   string // Message.RemoteAddr
		received string // in the Received field
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n"), "203.0.113.7:40000", "([203.0.113.7])"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n"), "[2001:db8::7]:40000", "([IPv6:2001:db8::7])"},
		{"v2 TCP4 with TLV", proxyV2Header(netip.MustParseAddrPort("198.51.100.9:1234"), netip.MustParseAddrPort("192.0.2.1:25")), "198.51.100.9:1234", "([198.51.100.9])"},
		{"v2 TCP6", proxyV2Header(netip.MustParseAddrPort("[2001:db8::9]:1234"), netip.MustParseAddrPort("[2001:db8::1]:25")), "[2001:db8::9]:1234", "([IPv6:2001:db8::9])"},
		{"v2 LOCAL", []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"), "127.0.0.1:", "([127.0.0.1])"},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "127.0.0.1:", "([127.0.0.1])"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startSec(t, smtpd.Config{ProxyFrom: trustLoopback})
			c := proxied(t, ts.Addr, tc.header)
			secCmd(t, c, "EHLO client.test", "250")
			secSend(t, c, "bob@example.net", "alice@example.org")
			m := secOnlyMessage(t, ts.Server)
			if got := m.RemoteAddr.String(); !strings.HasPrefix(got, tc.remote) {
				t.Errorf("Message.RemoteAddr = %s, want %s", got, tc.remote)
			}
			if received := receivedField(t, m); !strings.Contains(received, tc.received) {
				t.Errorf("Received field %q lacks %q", received, tc.received)
			}
			log, _ := os.ReadFile(filepath.Join(ts.DataDir, "access.log"))
			if !bytes.Contains(log, []byte(`"client":"`+tc.remote)) {
				t.Errorf("access log lacks the client %s: %s", tc.remote, log)
			}
			if !strings.HasPrefix(tc.remote, "127.") && !strings.Contains(string(ts.trace.bytes()), "client "+tc.remote+", through proxy 127.0.0.1:") {
				t.Errorf("trace lacks the proxied client:\n%s", ts.trace.bytes())
			}
		})
	}
}

// TestProxyUntrusted: from an address not in ProxyFrom, a PROXY line is an
// unknown command and changes nothing.
func TestProxyUntrusted(t *testing.T) {
	ts := startSec(t, smtpd.Config{ProxyFrom: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	c := secDial(t, ts.Addr, nil)
	secCmd(t, c, "PROXY TCP4 203.0.113.7 192.0.2.1 40000 25", "500 5.5.2")
	secCmd(t, c, "EHLO client.test", "250")
	secSend(t, c, "bob@example.net", "alice@example.org")
	if m := secOnlyMessage(t, ts.Server); !strings.HasPrefix(m.RemoteAddr.String(), "127.0.0.1:") {
		t.Errorf("Message.RemoteAddr = %s, want the connection's", m.RemoteAddr)
	}
}

// TestProxyBad: a trusted proxy that sends no valid header, or none in
// time, is disconnected without a greeting.
func TestProxyBad(t *testing.T) {
	ts := startSec(t, smtpd.Config{ProxyFrom: trustLoopback, CommandTimeout: 300 * time.Millisecond})
	for _, header := range []string{
		"EHLO client.test\r\n",
		"PROXY TCP4 203.0.113.7 192.0.2.1 40000\r\n",
		"PROXY TCP4 2001:db8::7 192.0.2.1 40000 25\r\n",
		"PROXY TCP4 203.0.113.7 192.0.2.1 040000 25\r\n",
		"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\n",
		"PROXY " + strings.Repeat("X", 120) + "\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + strings.Repeat("\x00", 12), // version 3
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04\x00\x00\x00\x00",              // too short
		"\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + strings.Repeat("\x00", 12), // UDP
		"", // nothing: the timeout
	} {
		c, err := client.Dial(ts.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Timeout = secWait
		c.SendRaw([]byte(header))
		start := time.Now()
		if r, err := c.ReadReply(); err == nil {
			t.Errorf("header %q: got %q, want the connection closed", header, r.String())
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("header %q: closed after %v", header, d)
		}
		c.Close()
	}
	if logs := ts.logs.bytes(); bytes.Count(logs, []byte("bad PROXY header")) != 10 {
		t.Errorf("want 10 bad headers logged:\n%s", logs)
	}
}

// TestProxyLimits: the per-address limit counts the real clients behind
// the proxy, and what a client says right behind the header is a pipelined
// batch, or early talk under GreetDelay.
func TestProxyLimits(t *testing.T) {
	ts := startSec(t, smtpd.Config{ProxyFrom: trustLoopback, MaxConnsPerIP: 1})
	header := func(src string) []byte {
		return []byte("PROXY TCP4 " + src + " 192.0.2.1 40000 25\r\n")
	}
	first := proxied(t, ts.Addr, header("203.0.113.7"))
	c, err := client.Dial(ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Timeout = secWait
	c.SendRaw(header("203.0.113.7"))
	secExpect(t, c, "421 4.7.0")
	secExpectEOF(t, c)
	// Another client through the same proxy is served.
	second := proxied(t, ts.Addr, header("203.0.113.8"))
	secCmd(t, second, "EHLO second.test", "250")
	secCmd(t, first, "EHLO first.test", "250")

	// Commands in the same write as the header: the client did not wait
	// for the greeting, and is served all the same.
	eager := earlyProxied(t, ts.Addr, header("203.0.113.9"))
	secExpect(t, eager, "220")
	secExpect(t, eager, "250")

	// Under GreetDelay it is refused.
	strict := startSec(t, smtpd.Config{ProxyFrom: trustLoopback, GreetDelay: time.Minute})
	early := earlyProxied(t, strict.Addr, header("203.0.113.9"))
	secExpect(t, early, "554 5.5.0")
	secExpectEOF(t, early)
}

// earlyProxied connects to addr and sends header and EHLO in one write.
func earlyProxied(t *testing.T, addr string, header []byte) *client.Client {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Timeout = secWait
	c.SendRaw(append(header, "EHLO early.test\r\n"...))
	return c
}
