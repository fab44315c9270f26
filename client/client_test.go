package client

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeConn is a net.Conn that reads a canned server transcript and records
// what the client writes, one string per Write (net/smtp's faker).
type fakeConn struct {
	net.Conn // nil: any other method panics
	r        io.Reader
	writes   []string
}

func newFakeConn(server string) *fakeConn { return &fakeConn{r: strings.NewReader(server)} }

func (c *fakeConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, string(p))
	return len(p), nil
}
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) Close() error                     { return nil }

func TestReadReply(t *testing.T) {
	tests := []struct {
		name         string
		server       string
		wantCode     int
		wantEnhanced string
		wantLines    []string
		wantString   string
	}{
		{name: "single line", server: "250 ok\r\n", wantCode: 250, wantLines: []string{"ok"}, wantString: "250 ok"},
		{name: "enhanced code", server: "250 2.1.0 Ok\r\n", wantCode: 250, wantEnhanced: "2.1.0", wantLines: []string{"Ok"}, wantString: "250 2.1.0 Ok"},
		{name: "enhanced code alone", server: "250 2.1.0\r\n", wantCode: 250, wantEnhanced: "2.1.0", wantLines: []string{""}, wantString: "250 2.1.0"},
		{name: "enhanced code with long parts", server: "550 5.100.999 no\r\n", wantCode: 550, wantEnhanced: "5.100.999", wantLines: []string{"no"}, wantString: "550 5.100.999 no"},
		{name: "code only", server: "250\r\n", wantCode: 250, wantLines: []string{""}, wantString: "250"},
		{name: "LF line ending", server: "221 bye\n", wantCode: 221, wantLines: []string{"bye"}, wantString: "221 bye"},
		{
			name:       "multi-line",
			server:     "250-mx.test\r\n250-PIPELINING\r\n250 HELP\r\n",
			wantCode:   250,
			wantLines:  []string{"mx.test", "PIPELINING", "HELP"},
			wantString: "250-mx.test\n250-PIPELINING\n250 HELP",
		},
		{
			name:         "multi-line with enhanced codes",
			server:       "214-2.0.0 one\r\n214-2.0.0 two\r\n214 2.0.0 three\r\n",
			wantCode:     214,
			wantEnhanced: "2.0.0",
			wantLines:    []string{"one", "two", "three"},
			wantString:   "214-2.0.0 one\n214-2.0.0 two\n214 2.0.0 three",
		},
		{
			name:       "enhanced code only after the first line",
			server:     "250-a\r\n250 2.0.0 b\r\n",
			wantCode:   250,
			wantLines:  []string{"a", "2.0.0 b"},
			wantString: "250-a\n250 2.0.0 b",
		},
		{name: "enhanced code of another class", server: "250 5.1.0 odd\r\n", wantCode: 250, wantLines: []string{"5.1.0 odd"}, wantString: "250 5.1.0 odd"},
		{name: "two parts are no enhanced code", server: "250 2.1 x\r\n", wantCode: 250, wantLines: []string{"2.1 x"}, wantString: "250 2.1 x"},
		{name: "letters are no enhanced code", server: "250 2.x.0 y\r\n", wantCode: 250, wantLines: []string{"2.x.0 y"}, wantString: "250 2.x.0 y"},
		{name: "sign is no enhanced code", server: "250 2.+1.0 y\r\n", wantCode: 250, wantLines: []string{"2.+1.0 y"}, wantString: "250 2.+1.0 y"},
		{name: "too long part is no enhanced code", server: "250 2.1000.0 y\r\n", wantCode: 250, wantLines: []string{"2.1000.0 y"}, wantString: "250 2.1000.0 y"},
		{name: "empty continuation", server: "250-\r\n250 x\r\n", wantCode: 250, wantLines: []string{"", "x"}, wantString: "250-\n250 x"},
		{name: "text with CR kept", server: "250 a\rb\r\n", wantCode: 250, wantLines: []string{"a\rb"}, wantString: "250 a\rb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(newFakeConn(tc.server + "220 next\r\n"))
			r, err := c.ReadReply()
			if err != nil {
				t.Fatalf("ReadReply on %q: %v", tc.server, err)
			}
			if r.Code != tc.wantCode || r.Enhanced != tc.wantEnhanced || !slices.Equal(r.Lines, tc.wantLines) {
				t.Errorf("ReadReply on %q = code %d, enhanced %q, lines %q; want %d, %q, %q",
					tc.server, r.Code, r.Enhanced, r.Lines, tc.wantCode, tc.wantEnhanced, tc.wantLines)
			}
			if r.String() != tc.wantString {
				t.Errorf("String() = %q, want %q", r.String(), tc.wantString)
			}
			if r.Class() != tc.wantCode/100 {
				t.Errorf("Class() = %d, want %d", r.Class(), tc.wantCode/100)
			}
			// The reader stops at the end of the reply.
			next, err := c.ReadReply()
			if err != nil || next.String() != "220 next" {
				t.Errorf("next ReadReply = %v, %v; want %q", next, err, "220 next")
			}
		})
	}
}

func TestReadReplyErrors(t *testing.T) {
	tests := []struct {
		name    string
		server  string
		wantErr error
	}{
		{name: "nothing", server: "", wantErr: io.EOF},
		{name: "EOF inside a multi-line reply", server: "250-a\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "too short", server: "25\r\n", wantErr: ErrMalformedReply},
		{name: "empty line", server: "\r\n", wantErr: ErrMalformedReply},
		{name: "not a number", server: "abc ok\r\n", wantErr: ErrMalformedReply},
		{name: "code below 200", server: "199 x\r\n", wantErr: ErrMalformedReply},
		{name: "code above 599", server: "600 x\r\n", wantErr: ErrMalformedReply},
		{name: "signed code", server: "+25 x\r\n", wantErr: ErrMalformedReply},
		{name: "bad separator", server: "250x\r\n", wantErr: ErrMalformedReply},
		{name: "four digits", server: "2500 x\r\n", wantErr: ErrMalformedReply},
		{name: "code changes inside the reply", server: "250-a\r\n251 b\r\n", wantErr: ErrMalformedReply},
		{name: "garbage after continuation", server: "250-a\r\nhello\r\n", wantErr: ErrMalformedReply},
		{name: "line too long", server: "250 " + strings.Repeat("x", 5000) + "\r\n", wantErr: ErrMalformedReply},
		{name: "HTTP", server: "HTTP/1.1 400 Bad Request\r\n", wantErr: ErrMalformedReply},
		{name: "endless reply", server: strings.Repeat("250-more\r\n", maxReplyLines) + "250 end\r\n", wantErr: ErrMalformedReply},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(newFakeConn(tc.server))
			r, err := c.ReadReply()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ReadReply on %q = %v, %v; want error %v", tc.server, r, err, tc.wantErr)
			}
			if r != nil {
				t.Errorf("ReadReply on %q returned reply %q with its error", tc.server, r.String())
			}
		})
	}
}

// TestReadReplyPartialLine checks that a reply line cut by the end of the
// connection is an error, not a reply.
func TestReadReplyPartialLine(t *testing.T) {
	c := NewClient(newFakeConn("250 no line end"))
	if r, err := c.ReadReply(); err == nil {
		t.Fatalf("ReadReply = %q, want an error", r.String())
	}
}

func TestDotStuff(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want string
	}{
		{name: "empty", msg: "", want: ".\r\n"},
		{name: "LF lines", msg: "a\nb\n", want: "a\r\nb\r\n.\r\n"},
		{name: "CRLF lines", msg: "a\r\nb\r\n", want: "a\r\nb\r\n.\r\n"},
		{name: "no final line ending", msg: "a\nb", want: "a\r\nb\r\n.\r\n"},
		{name: "leading dot", msg: ".x\n", want: "..x\r\n.\r\n"},
		{name: "lone dot", msg: "a\n.\nb\n", want: "a\r\n..\r\nb\r\n.\r\n"},
		{name: "two dots", msg: "..\n", want: "...\r\n.\r\n"},
		{name: "dot mid-line", msg: "a.b\n", want: "a.b\r\n.\r\n"},
		{name: "blank lines", msg: "a\n\n\nb\n", want: "a\r\n\r\n\r\nb\r\n.\r\n"},
		{name: "only a newline", msg: "\n", want: "\r\n.\r\n"},
		{name: "bare CR kept", msg: "a\rb\n", want: "a\rb\r\n.\r\n"},
		{name: "dot after bare CR not stuffed", msg: "a\r.b\n", want: "a\r.b\r\n.\r\n"},
		{name: "dot CRLF", msg: ".\r\n", want: "..\r\n.\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(DotStuff([]byte(tc.msg))); got != tc.want {
				t.Errorf("DotStuff(%q) = %q, want %q", tc.msg, got, tc.want)
			}
		})
	}
}

// TestDotStuffEnds checks that whatever the message, the stuffed form holds
// exactly one <CRLF>.<CRLF>, at its end (counting its start as a line start).
func TestDotStuffEnds(t *testing.T) {
	for _, msg := range []string{"", "\n", ".", ".\n.", "a\n.\r\n.\n", "\r\n.\r\n", "x\r\n.\r\ny", "\n.\n", "..\r\n.\r\n.."} {
		out := "\r\n" + string(DotStuff([]byte(msg)))
		if i := strings.Index(out, "\r\n.\r\n"); i != len(out)-5 {
			t.Errorf("DotStuff(%q) = %q ends the data before its end", msg, out[2:])
		}
	}
}

func TestSend(t *testing.T) {
	conn := newFakeConn("")
	c := NewClient(conn)
	var transcript bytes.Buffer
	c.Transcript = &transcript
	if err := c.Send("EHLO a", "MAIL FROM:<b@c>"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"a\r\nQUIT", "a\nb", "a\r"} {
		if err := c.Send("NOOP", bad); err == nil {
			t.Errorf("Send(%q) succeeded, want an error", bad)
		}
	}
	if err := c.SendRaw([]byte("x\n.\n")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"EHLO a\r\nMAIL FROM:<b@c>\r\n", "x\n.\n"}; !slices.Equal(conn.writes, want) {
		t.Errorf("writes = %q, want %q", conn.writes, want)
	}
	if want := "C: EHLO a\nC: MAIL FROM:<b@c>\nR: \"x\\n.\\n\"\n"; transcript.String() != want {
		t.Errorf("transcript = %q, want %q", transcript.String(), want)
	}
}

func TestSession(t *testing.T) {
	conn := newFakeConn("220 mx.test ESMTP\r\n" +
		"250-mx.test\r\n250 PIPELINING\r\n" +
		"250 2.1.0 Ok\r\n" +
		"250 2.1.5 Ok\r\n" +
		"354 go ahead\r\n" +
		"250 2.0.0 Ok: queued as X\r\n" +
		"221 2.0.0 Bye\r\n")
	c := NewClient(conn)
	if _, err := c.Greeting(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Mail("bob@example.net", "SIZE=10"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rcpt("alice@example.org"); err != nil {
		t.Fatal(err)
	}
	r, err := c.Data([]byte(".hi\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Lines[0] != "Ok: queued as X" {
		t.Errorf("Data reply lines = %q", r.Lines)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"EHLO client.test\r\n",
		"MAIL FROM:<bob@example.net> SIZE=10\r\n",
		"RCPT TO:<alice@example.org>\r\n",
		"DATA\r\n",
		"..hi\r\n.\r\n",
		"QUIT\r\n",
	}
	if !slices.Equal(conn.writes, want) {
		t.Errorf("client wrote %q, want %q", conn.writes, want)
	}
}

func TestReplyAsError(t *testing.T) {
	c := NewClient(newFakeConn("220 hi\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n"))
	c.Greeting()
	r, err := c.Rcpt("x@y")
	if err == nil {
		t.Fatal("Rcpt got 550 and no error")
	}
	var re *Reply
	if !errors.As(err, &re) || re.Code != 550 || re != r {
		t.Errorf("Rcpt error = %v, want the 550 reply itself", err)
	}
	if want := "smtp: 550-5.1.1 no such / 550 5.1.1 user"; err.Error() != want {
		t.Errorf("error text = %q, want %q", err.Error(), want)
	}
	c = NewClient(newFakeConn("554 go away\r\n"))
	if _, err := c.Greeting(); err == nil {
		t.Error("Greeting accepted a 554")
	}
}
