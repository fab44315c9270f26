package smtpd

import (
	"bufio"
	"crypto/tls"
	"strings"
	"testing"
)

func TestReadProxyHeader(t *testing.T) {
	tests := []struct {
		in, want string // want: "src dst", "local", or "error"
	}{
		{"PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\r\n", "203.0.113.7:56324 192.0.2.1:25"},
		{"PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n", "[2001:db8::7]:1 [2001:db8::1]:65535"},
		{"PROXY UNKNOWN\r\n", "local"},
		{"PROXY UNKNOWN whatever 1 2 3\r\n", "local"},
		{"PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\n", "error"},                                // LF alone
		{"PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n", "error"},                                 // a field short
		{"PROXY TCP4 203.0.113.7 192.0.2.1 56324 25 x\r\n", "error"},                            // a field over
		{"PROXY TCP4 203.0.113.7  192.0.2.1 56324 25\r\n", "error"},                             // two spaces
		{"PROXY TCP4 2001:db8::7 192.0.2.1 56324 25\r\n", "error"},                              // family mismatch
		{"PROXY TCP6 ::ffff:1.2.3.4 2001:db8::1 1 2\r\n", "[::ffff:1.2.3.4]:1 [2001:db8::1]:2"}, // v4-mapped is IPv6 (the session unmaps it)
		{"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n", "error"},                                // zone
		{"PROXY TCP4 203.0.113.7 192.0.2.1 65536 25\r\n", "error"},                              // port range
		{"PROXY TCP4 203.0.113.7 192.0.2.1 0080 25\r\n", "error"},                               // leading zero
		{"PROXY TCP4 203.0.113.7 192.0.2.1 +80 25\r\n", "error"},                                // sign
		{"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n", "error"},                                   // not TCP
		{"PROXY " + strings.Repeat("1", 120) + "\r\n", "error"},                                 // too long
		{"proxy TCP4 203.0.113.7 192.0.2.1 1 2\r\n", "error"},                                   // case
		{"EHLO x\r\n", "error"},
		{"", "error"},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\xc0\x00\x02\x01\x00\x50\x00\x19", "203.0.113.7:80 192.0.2.1:25"},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x10\xcb\x00\x71\x07\xc0\x00\x02\x01\x00\x50\x00\x19\x04\x00\x01X", "203.0.113.7:80 192.0.2.1:25"}, // TLV skipped
		{"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x03abc", "local"},                                                                                 // LOCAL
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x00\x00\x00", "local"},                                                                                    // UNSPEC
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x31\x00\x00", "local"},                                                                                    // Unix, no addresses given
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + strings.Repeat("\x00", 12), "error"},                                                       // UDP
		{"\r\n\r\n\x00\r\nQUIT\n\x22\x11\x00\x0c" + strings.Repeat("\x00", 12), "error"},                                                       // command 2
		{"\r\n\r\n\x00\r\nQUIT\n\x11\x11\x00\x0c" + strings.Repeat("\x00", 12), "error"},                                                       // version 1
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x0c" + strings.Repeat("\x00", 12), "error"},                                                       // IPv6 too short
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00", "error"},                                                                            // cut short
		{"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x00", "error"},                                                                                    // signature
	}
	for _, tc := range tests {
		br := bufio.NewReader(strings.NewReader(tc.in + "REST"))
		h, err := readProxyHeader(br)
		var got string
		switch {
		case err != nil:
			got = "error"
		case h.local:
			got = "local"
		default:
			got = h.src.String() + " " + h.dst.String()
		}
		if got != tc.want {
			t.Errorf("readProxyHeader(%q) = %s (%v), want %s", tc.in, got, err, tc.want)
		}
		if err == nil {
			if rest, _ := br.Peek(4); string(rest) != "REST" {
				t.Errorf("readProxyHeader(%q) left %q, want REST", tc.in, rest)
			}
		}
	}
}

func TestRedactCommand(t *testing.T) {
	tests := []struct{ in, want string }{
		{"AUTH PLAIN AGFsaWNlAHB3", "AUTH PLAIN <redacted>"},
		{"auth login YWxpY2U=", "auth login <redacted>"},
		{"AUTH  PLAIN\tAGFsaWNlAHB3", "AUTH PLAIN <redacted>"},
		{"AUTH\tPLAIN AGFsaWNlAHB3", "AUTH PLAIN <redacted>"},
		{"AUTH PLAIN", "AUTH PLAIN"},
		{"AUTH LOGIN ", "AUTH LOGIN "},
		{"AUTH c2VjcmV0+/==", "AUTH <redacted>"},
		// Not a mechanism the server knows: maybe credentials.
		{"AUTH AGJvYgBodW50ZXIyMzQ1", "AUTH <redacted>"},
		{"AUTH CRAM-MD5 abc", "AUTH <redacted>"},
		{"AUTH", "AUTH"},
		{"MAIL FROM:<a@b>", "MAIL FROM:<a@b>"},
		{"AUTHX PLAIN abc", "AUTHX PLAIN abc"},
	}
	for _, tc := range tests {
		if got := redactCommand(tc.in); got != tc.want {
			t.Errorf("redactCommand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReceivedProtocol(t *testing.T) {
	tests := []struct {
		esmtp, utf8, tls bool
		user             string
		want             string
	}{
		{false, false, false, "", "SMTP"},
		{false, false, true, "alice", "SMTP"},
		{true, false, false, "", "ESMTP"},
		{true, false, true, "", "ESMTPS"},
		{true, false, false, "alice", "ESMTPA"},
		{true, false, true, "alice", "ESMTPSA"},
		{true, true, true, "alice", "UTF8SMTPSA"},
	}
	for _, tc := range tests {
		m := &Message{ESMTP: tc.esmtp, SMTPUTF8: tc.utf8, AuthUser: tc.user}
		if tc.tls {
			m.TLS = new(tls.ConnectionState)
		}
		if got := m.receivedProtocol(); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc, got, tc.want)
		}
	}
	if got := headerComment("a(b)\\c\r\nd"); got != `a\(b\)\\c??d` {
		t.Errorf("headerComment = %q", got)
	}
}
