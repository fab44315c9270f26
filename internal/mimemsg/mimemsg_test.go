package mimemsg

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// multipartMessage is what a mail client sends: an RFC 2047 subject, text
// and HTML alternatives, and a base64 attachment with an RFC 2231 name.
const multipartMessage = "From: =?UTF-8?Q?Jos=C3=A9?= <jose@example.net>\r\n" +
	"To: alice@example.org\r\n" +
	"Subject: =?UTF-8?Q?caf=C3=A9?= and =?ISO-8859-1?B?Y2Fm6Q==?=\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/alternative; boundary=inner\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain; charset=iso-8859-1\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Caf=E9 at ten.=\r\n" +
	" See you.\r\n" +
	"--inner\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	"<p>Café at ten.</p>\r\n" +
	"--inner--\r\n" +
	"--outer\r\n" +
	"Content-Type: application/pdf\r\n" +
	"Content-Disposition: attachment; filename*=UTF-8''men%C3%BA.pdf\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"JVBERi0x\r\n" +
	"LjQK\r\n" +
	"--outer--\r\n" +
	"epilogue\r\n"

func TestParseMultipart(t *testing.T) {
	for _, form := range []struct{ name, eol string }{{"wire", "\r\n"}, {"maildir", "\n"}} {
		t.Run(form.name, func(t *testing.T) {
			raw := strings.ReplaceAll(multipartMessage, "\r\n", form.eol)
			m, err := Parse([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := m.Subject(), "café and café"; got != want {
				t.Errorf("Subject() = %q, want %q", got, want)
			}
			if got, want := m.Text(), "Café at ten. See you."; got != want {
				t.Errorf("Text() = %q, want %q", got, want)
			}
			if got, want := m.HTML(), "<p>Café at ten.</p>"; got != want {
				t.Errorf("HTML() = %q, want %q", got, want)
			}
			if len(m.Parts) != 3 {
				t.Fatalf("%d parts, want 3", len(m.Parts))
			}
			att := m.Attachments()
			if len(att) != 1 {
				t.Fatalf("%d attachments, want 1", len(att))
			}
			a := att[0]
			if a.Filename != "menú.pdf" || a.ContentType != "application/pdf" || a.Index != 2 || string(a.Body) != "%PDF-1.4\n" {
				t.Errorf("attachment = %q %q #%d %q", a.Filename, a.ContentType, a.Index, a.Body)
			}
			from, err := AddressParser.Parse(m.Header.Get("From"))
			if err != nil || from.Name != "José" {
				t.Errorf("From = %v, %v; want the name José", from, err)
			}
		})
	}
}

func TestParseSinglePart(t *testing.T) {
	tests := []struct {
		name, raw, text, html string
		attachments           int
	}{
		{"no content type", "Subject: x\r\n\r\nhello\r\n", "hello\r\n", "", 0},
		{"no body", "Subject: x\r\n", "", "", 0},
		{"html only", "Content-Type: text/html\r\n\r\n<b>hi</b>", "", "<b>hi</b>", 0},
		{"bad content type", "Content-Type: ;;;\r\n\r\nplain", "plain", "", 0},
		{"windows-1252", "Content-Type: text/plain; charset=Windows-1252\r\n\r\n\x93quoted\x94 \x80", "“quoted” €", "", 0},
		{"named text is an attachment", "Content-Type: text/plain; name=notes.txt\r\n\r\nnotes", "", "", 1},
		{"inline image is not", "Content-Type: image/png\r\nContent-Disposition: inline\r\n\r\nPNG", "", "", 0},
		{"bare image is", "Content-Type: image/png\r\n\r\nPNG", "", "", 1},
		{"multipart without parts", "Content-Type: multipart/mixed; boundary=b\r\n\r\njust text", "", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Text(); got != tt.text {
				t.Errorf("Text() = %q, want %q", got, tt.text)
			}
			if got := m.HTML(); got != tt.html {
				t.Errorf("HTML() = %q, want %q", got, tt.html)
			}
			if got := len(m.Attachments()); got != tt.attachments {
				t.Errorf("%d attachments, want %d", got, tt.attachments)
			}
		})
	}
}

// A multipart cut short keeps what came, and a base64 body that does not
// decode stays as it was sent: nothing is silently lost.
func TestParseBroken(t *testing.T) {
	raw := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b\r\n" +
		"Content-Transfer-Encoding: base64\r\nContent-Type: application/octet-stream\r\n\r\n!!not base64!!"
	m, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Text() != "first" {
		t.Errorf("Text() = %q, want %q", m.Text(), "first")
	}
	if len(m.Parts) != 2 || string(m.Parts[1].Body) != "!!not base64!!" {
		t.Errorf("parts = %d, last %q", len(m.Parts), m.Parts[len(m.Parts)-1].Body)
	}
	if _, err := Parse([]byte("not a header line\r\n")); err == nil {
		t.Error("Parse of a message without a header section: no error")
	}
}

func TestParseBounds(t *testing.T) {
	var deep bytes.Buffer
	deep.WriteString("Content-Type: multipart/mixed; boundary=b0\r\n\r\n")
	for i := 1; i <= MaxDepth+5; i++ {
		fmt.Fprintf(&deep, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i-1, i)
	}
	deep.WriteString("--leaf\r\n")
	m, err := Parse(deep.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) != 1 || !strings.HasPrefix(m.Parts[0].ContentType, "multipart/") {
		t.Errorf("deep nesting: %d parts, first %q; want one raw multipart", len(m.Parts), m.Parts[0].ContentType)
	}

	var wide bytes.Buffer
	wide.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for range MaxParts + 10 {
		wide.WriteString("--b\r\n\r\nx\r\n")
	}
	wide.WriteString("--b--\r\n")
	m, err = Parse(wide.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) != MaxParts || !m.Truncated {
		t.Errorf("%d parts, truncated %v; want %d and true", len(m.Parts), m.Truncated, MaxParts)
	}
}

func TestDecodeHeader(t *testing.T) {
	tests := map[string]string{
		"plain":                            "plain",
		"=?UTF-8?Q?caf=C3=A9?=":            "café",
		"=?utf-8?b?Y2Fmw6k=?=":             "café",
		"=?iso-8859-1?q?caf=E9?=":          "café",
		"=?x-unknown?q?abc?=":              "=?x-unknown?q?abc?=",
		"=?UTF-8?Q?a?= =?UTF-8?Q?b?= tail": "ab tail",
	}
	for in, want := range tests {
		if got := DecodeHeader(in); got != want {
			t.Errorf("DecodeHeader(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(multipartMessage))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b--"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if fields := HeaderFields(raw); len(fields) > MaxFields {
			t.Fatalf("%d header fields", len(fields))
		}
		m, err := Parse(raw)
		if err != nil {
			return
		}
		if len(m.Parts) > MaxParts {
			t.Fatalf("%d parts", len(m.Parts))
		}
		for i, p := range m.Parts {
			if p.Index != i {
				t.Fatalf("part %d has Index %d", i, p.Index)
			}
		}
		_, _, _ = m.Text(), m.HTML(), m.Attachments()
	})
}

func TestHeaderFields(t *testing.T) {
	for _, eol := range []string{"\r\n", "\n"} {
		raw := strings.ReplaceAll("Received: from a\r\n\tby b; Mon, 1 Jan 2024\r\n"+
			"Subject: =?UTF-8?Q?caf=C3=A9?=\r\n"+
			"Received: from c\r\n"+
			"X-Empty:\r\n"+
			"\r\n"+
			"Body: not a field\r\n", "\r\n", eol)
		got := HeaderFields([]byte(raw))
		want := []Field{
			{"Received", "from a by b; Mon, 1 Jan 2024"},
			{"Subject", "=?UTF-8?Q?caf=C3=A9?="},
			{"Received", "from c"},
			{"X-Empty", ""},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("HeaderFields with %q line endings = %q, want %q", eol, got, want)
		}
	}
	// A line that is not a field ends the header section; so does the
	// end of the input; the count is bounded.
	if got := HeaderFields([]byte("A: 1\nnot a field\nB: 2\n\n")); len(got) != 1 {
		t.Errorf("after a line that is not a field: %q", got)
	}
	if got := HeaderFields([]byte("A: 1\nB: 2")); len(got) != 2 {
		t.Errorf("without a blank line: %q", got)
	}
	many := strings.Repeat("X: y\n", MaxFields+10)
	if got := HeaderFields([]byte(many)); len(got) != MaxFields {
		t.Errorf("%d fields read, want MaxFields (%d)", len(got), MaxFields)
	}
}
