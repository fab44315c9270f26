package smtpd

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestLFWriter(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{name: "empty", input: "", want: ""},
		{name: "no line ending", input: "abc", want: "abc"},
		{name: "CRLF", input: "a\r\nb\r\n", want: "a\nb\n"},
		{name: "only CRLF", input: "\r\n", want: "\n"},
		{name: "bare LF kept", input: "a\nb\n", want: "a\nb\n"},
		{name: "bare CR kept", input: "a\rb", want: "a\rb"},
		{name: "CR at the end kept", input: "abc\r", want: "abc\r"},
		{name: "CR CR LF", input: "a\r\r\nb", want: "a\r\nb"},
		{name: "CR CR CR", input: "\r\r\r", want: "\r\r\r"},
		{name: "LF CR", input: "a\n\rb", want: "a\n\rb"},
		{name: "CR LF LF", input: "a\r\n\n", want: "a\n\n"},
		{name: "CRLF CRLF", input: "\r\n\r\n", want: "\n\n"},
		{name: "mixed", input: "x\r\ny\rz\n\r\r\n\r", want: "x\ny\rz\n\r\n\r"},
		{name: "8-bit", input: "\xff\r\n\x00\r", want: "\xff\n\x00\r"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One write, then every split in two, then byte by byte.
			var splits [][]string
			splits = append(splits, []string{tc.input})
			for i := 0; i <= len(tc.input); i++ {
				splits = append(splits, []string{tc.input[:i], tc.input[i:]})
				for j := i; j <= len(tc.input); j++ {
					splits = append(splits, []string{tc.input[:i], tc.input[i:j], tc.input[j:]})
				}
			}
			splits = append(splits, strings.Split(tc.input, ""))
			for _, parts := range splits {
				var out bytes.Buffer
				w := &lfWriter{w: &out}
				for _, p := range parts {
					n, err := w.Write([]byte(p))
					if n != len(p) || err != nil {
						t.Fatalf("Write(%q) = %d, %v; want %d, nil", p, n, err, len(p))
					}
				}
				if err := w.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				if out.String() != tc.want {
					t.Fatalf("lfWriter given %q wrote %q, want %q", parts, out.String(), tc.want)
				}
			}
		})
	}
}

// errWriter fails every write.
type errWriter struct{}

var errWrite = errors.New("write failed")

func (errWriter) Write(p []byte) (int, error) { return 0, errWrite }

func TestLFWriterError(t *testing.T) {
	for _, input := range []string{"abc", "a\r\nb", "a\rb", "\r\n"} {
		w := &lfWriter{w: errWriter{}}
		if _, err := w.Write([]byte(input)); !errors.Is(err, errWrite) {
			t.Errorf("Write(%q) error = %v, want %v", input, err, errWrite)
		}
	}
	w := &lfWriter{w: errWriter{}}
	w.cr = true
	if err := w.Close(); !errors.Is(err, errWrite) {
		t.Errorf("Close with a pending CR: error = %v, want %v", err, errWrite)
	}
}

// testMessage is a message as the session builds it, with fixed values.
func testMessage() *Message {
	return &Message{
		ID:         "QUEUEID",
		From:       "bob@example.net",
		To:         []string{"alice@example.org"},
		Helo:       "client.test",
		ESMTP:      true,
		RemoteAddr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 50000},
		Time:       time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC),
	}
}

const testDate = "Tue, 14 Nov 2023 22:13:20 +0000"

func TestHeaderWriter(t *testing.T) {
	const (
		addFrom = "From: <bob@example.net>\n"
		addTo   = "To: <alice@example.org>\n"
		addDate = "Date: " + testDate + "\n"
		addID   = "Message-ID: <QUEUEID@mx.test>\n"
		addAll  = addFrom + addTo + addDate + addID
	)
	tests := []struct {
		name  string
		input string // LF line endings, as lfWriter passes it on
		want  string
	}{
		{name: "all present", input: "From: a\nTo: b\nDate: d\nMessage-ID: <x>\n\nbody\n", want: "From: a\nTo: b\nDate: d\nMessage-ID: <x>\n\nbody\n"},
		{name: "none present", input: "Subject: s\n\nbody\n", want: addAll + "Subject: s\n\nbody\n"},
		{name: "names in any case", input: "FROM: a\nto: b\nDATE: d\nmessage-ID: <x>\n\nbody\n", want: "FROM: a\nto: b\nDATE: d\nmessage-ID: <x>\n\nbody\n"},
		{name: "From missing", input: "To: b\nDate: d\nMessage-ID: <x>\n\n", want: addFrom + "To: b\nDate: d\nMessage-ID: <x>\n\n"},
		{name: "Date missing", input: "From: a\nTo: b\nMessage-ID: <x>\n\n", want: addDate + "From: a\nTo: b\nMessage-ID: <x>\n\n"},
		{name: "Message-ID missing", input: "From: a\nTo: b\nDate: d\n\n", want: addID + "From: a\nTo: b\nDate: d\n\n"},
		{name: "Cc instead of To", input: "From: a\nCc: c\nDate: d\nMessage-ID: <x>\n\n", want: "From: a\nCc: c\nDate: d\nMessage-ID: <x>\n\n"},
		{name: "Bcc instead of To", input: "From: a\nbcc: c\nDate: d\nMessage-ID: <x>\n\n", want: "From: a\nbcc: c\nDate: d\nMessage-ID: <x>\n\n"},
		{name: "empty Bcc", input: "Bcc:\n\nhi\n", want: addFrom + addDate + addID + "Bcc:\n\nhi\n"},
		{name: "folded header", input: "Subject: a\n b\nFrom: x\n\n", want: addTo + addDate + addID + "Subject: a\n b\nFrom: x\n\n"},
		{name: "field name prefix is not the field", input: "From-X: a\nTo-Do: b\n\n", want: addAll + "From-X: a\nTo-Do: b\n\n"},
		{name: "From in the body does not count", input: "Subject: s\n\nFrom: x\n", want: addAll + "Subject: s\n\nFrom: x\n"},
		{name: "From after a non-header line does not count", input: "Subject: s\nplain text\nFrom: x\n", want: addAll + "Subject: s\nplain text\nFrom: x\n"},

		// Messages without a header section get a blank line after the
		// server's headers, so that they stay the body.
		{name: "headerless", input: "hello world\nsecond line\n", want: addAll + "\nhello world\nsecond line\n"},
		{name: "headerless with colon later", input: "hi there: friend\n", want: addAll + "\nhi there: friend\n"},
		{name: "starts with continuation", input: " folded\nFrom: x\n\n", want: addAll + "\n folded\nFrom: x\n\n"},
		{name: "starts with colon", input: ": x\n\n", want: addAll + "\n: x\n\n"},
		{name: "starts with blank line", input: "\nFrom: x\n", want: addAll + "\nFrom: x\n"},

		// Messages that end without a line ending.
		{name: "empty", input: "", want: addAll},
		{name: "header without newline", input: "From: a", want: addTo + addDate + addID + "From: a"},
		{name: "headers without blank line", input: "Subject: s\nFrom: a\n", want: addTo + addDate + addID + "Subject: s\nFrom: a\n"},
		{name: "text without newline", input: "hello", want: addAll + "\nhello"},
		{name: "body without newline", input: "Subject: s\n\nbody", want: addAll + "Subject: s\n\nbody"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One write, every split in two, byte by byte.
			var splits [][]string
			splits = append(splits, []string{tc.input})
			for i := 0; i <= len(tc.input); i++ {
				splits = append(splits, []string{tc.input[:i], tc.input[i:]})
			}
			splits = append(splits, strings.Split(tc.input, ""))
			for _, parts := range splits {
				var out bytes.Buffer
				calls := 0
				m := testMessage()
				h := &headerWriter{w: &out, prefix: func(seen headerSet) []byte {
					calls++
					return m.missingHeaders(seen, "mx.test")
				}}
				for _, p := range parts {
					n, err := h.Write([]byte(p))
					if n != len(p) || err != nil {
						t.Fatalf("Write(%q) = %d, %v; want %d, nil", p, n, err, len(p))
					}
				}
				if err := h.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				if err := h.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				if out.String() != tc.want {
					t.Fatalf("headerWriter given %q wrote\n%q, want\n%q", parts, out.String(), tc.want)
				}
				if calls != 1 {
					t.Fatalf("prefix called %d times, want 1", calls)
				}
			}
		})
	}
}

// TestHeaderWriterLongHeader checks that a header section longer than
// maxHeaderScan is not held in memory: the message goes out as it is, and
// no field is added, since one past the limit may be there (a To: added
// beside one the scan missed would duplicate it, or reveal Bcc recipients).
func TestHeaderWriterLongHeader(t *testing.T) {
	var msg strings.Builder
	for msg.Len() <= maxHeaderScan+1000 {
		msg.WriteString("X-Pad: 0123456789012345678901234567890123456789\n")
	}
	msg.WriteString("From: late@example.net\n\nbody\n")
	input := msg.String()

	var out bytes.Buffer
	var seenAt headerSet = 0xff
	h := &headerWriter{w: &out, prefix: func(seen headerSet) []byte {
		seenAt = seen
		return []byte("Prefix: x\n")
	}}
	const chunk = 1000
	for i := 0; i < len(input); i += chunk {
		part := input[i:min(i+chunk, len(input))]
		if _, err := h.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
		if held := len(h.buf); held > maxHeaderScan+chunk {
			t.Fatalf("after %d octets headerWriter holds %d, want at most %d", i+len(part), held, maxHeaderScan+chunk)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if want := "Prefix: x\n" + input; out.String() != want {
		t.Errorf("headerWriter wrote %d octets, want the %d of the prefix and the message unchanged", out.Len(), len(want))
	}
	if seenAt != allHeaders {
		t.Errorf("the prefix was told the fields %b were seen, want all (%b): none may be added", seenAt, allHeaders)
	}

	// A first line longer than maxHeaderScan, without a line ending yet.
	out.Reset()
	h = &headerWriter{w: &out, prefix: func(headerSet) []byte { return []byte("Prefix: x\n") }}
	long := "Subject: " + strings.Repeat("x", maxHeaderScan+10)
	if _, err := h.Write([]byte(long)); err != nil {
		t.Fatal(err)
	}
	if out.Len() == 0 {
		t.Errorf("headerWriter holds a %d-octet line, want it written", len(long))
	}
	h.Write([]byte("\n\nbody\n"))
	h.Close()
	if want := "Prefix: x\n" + long + "\n\nbody\n"; out.String() != want {
		t.Errorf("headerWriter wrote %d octets, want %d", out.Len(), len(want))
	}
}

func TestHeaderWriterError(t *testing.T) {
	h := &headerWriter{w: errWriter{}, prefix: func(headerSet) []byte { return []byte("P: x\n") }}
	if _, err := h.Write([]byte("Subject: s\n\nbody\n")); !errors.Is(err, errWrite) {
		t.Errorf("Write error = %v, want %v", err, errWrite)
	}
	h = &headerWriter{w: errWriter{}, prefix: func(headerSet) []byte { return []byte("P: x\n") }}
	h.Write([]byte("Subject: s"))
	if err := h.Close(); !errors.Is(err, errWrite) {
		t.Errorf("Close error = %v, want %v", err, errWrite)
	}
}

func TestTraceHeaders(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Message)
		want   string
	}{
		{
			name: "one recipient",
			want: "Return-Path: <bob@example.net>\n" +
				"Received: from client.test ([192.0.2.1])\n" +
				"\tby mx.test (smtpd) with ESMTP id QUEUEID\n" +
				"\tfor <alice@example.org>;\n" +
				"\t" + testDate + "\n",
		},
		{
			name:   "two recipients: no for clause",
			change: func(m *Message) { m.To = append(m.To, "carol@example.org") },
			want: "Return-Path: <bob@example.net>\n" +
				"Received: from client.test ([192.0.2.1])\n" +
				"\tby mx.test (smtpd) with ESMTP id QUEUEID;\n" +
				"\t" + testDate + "\n",
		},
		{
			name:   "null sender",
			change: func(m *Message) { m.From = "" },
			want: "Return-Path: <>\n" +
				"Received: from client.test ([192.0.2.1])\n" +
				"\tby mx.test (smtpd) with ESMTP id QUEUEID\n" +
				"\tfor <alice@example.org>;\n" +
				"\t" + testDate + "\n",
		},
		{
			name:   "HELO",
			change: func(m *Message) { m.ESMTP = false },
			want: "Return-Path: <bob@example.net>\n" +
				"Received: from client.test ([192.0.2.1])\n" +
				"\tby mx.test (smtpd) with SMTP id QUEUEID\n" +
				"\tfor <alice@example.org>;\n" +
				"\t" + testDate + "\n",
		},
		{
			name:   "SMTPUTF8",
			change: func(m *Message) { m.SMTPUTF8 = true },
			want: "Return-Path: <bob@example.net>\n" +
				"Received: from client.test ([192.0.2.1])\n" +
				"\tby mx.test (smtpd) with UTF8SMTP id QUEUEID\n" +
				"\tfor <alice@example.org>;\n" +
				"\t" + testDate + "\n",
		},
		{
			name:   "IPv6 loopback",
			change: func(m *Message) { m.RemoteAddr = &net.TCPAddr{IP: net.IPv6loopback, Port: 1} },
			want: "Return-Path: <bob@example.net>\n" +
				"Received: from client.test ([IPv6:::1])\n" +
				"\tby mx.test (smtpd) with ESMTP id QUEUEID\n" +
				"\tfor <alice@example.org>;\n" +
				"\t" + testDate + "\n",
		},
		{
			name:   "IPv6 with zone",
			change: func(m *Message) { m.RemoteAddr = &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 1} },
			want: "Return-Path: <bob@example.net>\n" +
				"Received: from client.test ([IPv6:fe80::1])\n" +
				"\tby mx.test (smtpd) with ESMTP id QUEUEID\n" +
				"\tfor <alice@example.org>;\n" +
				"\t" + testDate + "\n",
		},
		{
			name:   "IPv4-mapped IPv6",
			change: func(m *Message) { m.RemoteAddr = &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1} },
			want: "Return-Path: <bob@example.net>\n" +
				"Received: from client.test ([192.0.2.7])\n" +
				"\tby mx.test (smtpd) with ESMTP id QUEUEID\n" +
				"\tfor <alice@example.org>;\n" +
				"\t" + testDate + "\n",
		},
		{
			name: "not an IP address",
			change: func(m *Message) {
				a, _ := net.Pipe()
				defer a.Close()
				m.RemoteAddr = a.RemoteAddr()
			},
			want: "Return-Path: <bob@example.net>\n" +
				"Received: from client.test (unknown)\n" +
				"\tby mx.test (smtpd) with ESMTP id QUEUEID\n" +
				"\tfor <alice@example.org>;\n" +
				"\t" + testDate + "\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := testMessage()
			if tc.change != nil {
				tc.change(m)
			}
			if got := string(m.traceHeaders("mx.test")); got != tc.want {
				t.Errorf("traceHeaders =\n%q, want\n%q", got, tc.want)
			}
		})
	}
}

func TestMissingHeaders(t *testing.T) {
	m := testMessage()
	m.From = ""
	m.To = []string{"a@example.org", "b@example.org"}
	want := "From: <MAILER-DAEMON@mx.test>\n" +
		"To: <a@example.org>,\n\t<b@example.org>\n" +
		"Date: " + testDate + "\n" +
		"Message-ID: <QUEUEID@mx.test>\n"
	if got := string(m.missingHeaders(0, "mx.test")); got != want {
		t.Errorf("missingHeaders =\n%q, want\n%q", got, want)
	}
	all := headerFrom | headerTo | headerDate | headerMessageID
	if got := m.missingHeaders(all, "mx.test"); len(got) != 0 {
		t.Errorf("missingHeaders with every field present = %q, want nothing", got)
	}
}

func TestTranscriptLineString(t *testing.T) {
	tests := []struct {
		line TranscriptLine
		want string
	}{
		{TranscriptLine{Kind: KindClient, Text: "EHLO x"}, "C: EHLO x"},
		{TranscriptLine{Kind: KindServer, Text: "250 Ok"}, "S: 250 Ok"},
		{TranscriptLine{Kind: KindEvent, Text: "connected from 127.0.0.1:1"}, "* connected from 127.0.0.1:1"},
	}
	for _, tt := range tests {
		if got := tt.line.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// TestBody: the body is what follows the header section, also when no blank
// line ends it, as the server itself reads the message when it stores it.
func TestBody(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"header and body", "Subject: x\r\n\r\nHello.\r\n", "Hello.\r\n"},
		{"empty header section", "\r\nHello.\r\n", "Hello.\r\n"},
		{"folded field", "Subject: x\r\n y\r\n\r\nHello.\r\n", "Hello.\r\n"},
		{"no header section", "hello world\r\nbye\r\n", "hello world\r\nbye\r\n"},
		{"starts with a continuation line", " hello\r\n", " hello\r\n"},
		{"header section ended by a non-field line", "Subject: x\r\nhello there\r\n\r\nbye\r\n", "hello there\r\n\r\nbye\r\n"},
		{"all header fields", "Subject: x\r\nTo: <a@example.org>\r\n", ""},
		{"one field, no line ending", "Subject: x", ""},
		{"one word, no line ending", "hello", "hello"},
		{"bare LF", "Subject: x\n\nHello.\n", "Hello.\n"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Message{Data: []byte(tt.data)}
			if got := string(m.Body()); got != tt.want {
				t.Errorf("Body() = %q, want %q", got, tt.want)
			}
		})
	}
}
