package client

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestParseDialogue(t *testing.T) {
	src := "# a comment\n" +
		"\n" +
		"S: ^220\r\n" +
		"C: EHLO a\n" +
		"C:\n" +
		"C:NOOP\n" +
		`R: "x\n.\r\n"` + "\n" +
		"   \n" +
		"S: ^250 \\S+$\n" +
		"CLOSED\n"
	d, err := ParseDialogue(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []step{
		{line: 3, kind: "S"},
		{line: 4, kind: "C", data: "EHLO a\r\n"},
		{line: 5, kind: "C", data: "\r\n"},
		{line: 6, kind: "C", data: "NOOP\r\n"},
		{line: 7, kind: "R", data: "x\n.\r\n"},
		{line: 9, kind: "S"},
		{line: 10, kind: "CLOSED"},
	}
	if len(d.steps) != len(want) {
		t.Fatalf("parsed %d steps, want %d", len(d.steps), len(want))
	}
	for i, st := range d.steps {
		w := want[i]
		if st.line != w.line || st.kind != w.kind || st.data != w.data {
			t.Errorf("step %d = {%d %s %q}, want {%d %s %q}", i, st.line, st.kind, st.data, w.line, w.kind, w.data)
		}
		if (st.kind == "S") != (st.re != nil) {
			t.Errorf("step %d (%s) has regexp %v", i, st.kind, st.re)
		}
	}
	if !d.steps[0].re.MatchString("250-x\n220 mx") {
		t.Errorf("S: regexp is not in multi-line mode")
	}
}

func TestParseDialogueErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		wantErr string // a part of the error
	}{
		{name: "unknown step", src: "X: hello\n", wantErr: "dialogue line 1: "},
		{name: "no colon", src: "S: ^220\nC EHLO a\n", wantErr: "dialogue line 2: "},
		{name: "lower case step", src: "c: EHLO a\n", wantErr: "dialogue line 1"},
		{name: "CLOSED with text", src: "CLOSED now\n", wantErr: "dialogue line 1"},
		{name: "R: not quoted", src: "# x\n\nR: hello\n", wantErr: "dialogue line 3: an R: step wants a Go-quoted string"},
		{name: "R: unterminated", src: "R: \"abc\n", wantErr: "dialogue line 1: an R: step wants a Go-quoted string"},
		{name: "R: bad escape", src: `R: "\q"` + "\n", wantErr: "dialogue line 1: an R: step wants a Go-quoted string"},
		{name: "S: bad regexp", src: "S: ^250 (\n", wantErr: "dialogue line 1: error parsing regexp"},
		{name: "S: bad repetition", src: "C: a\nS: *\n", wantErr: "dialogue line 2: error parsing regexp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDialogue(strings.NewReader(tc.src))
			if err == nil {
				t.Fatalf("ParseDialogue(%q) = %d steps, want an error", tc.src, len(d.steps))
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseDialogue(%q) error = %q, want it to hold %q", tc.src, err, tc.wantErr)
			}
		})
	}
}

// recordingConn records each Write on a connection.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	writes []string
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, string(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recordingConn) written() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// fakeServer is a tiny SMTP server on one end of a net.Pipe: it greets, then
// answers each command line; after DATA it reads up to <CRLF>.<CRLF>. QUIT
// hangs up after its reply, and so does "HANGUP" without one.
func fakeServer(t *testing.T, conn net.Conn) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	go func() {
		defer close(done)
		defer conn.Close()
		br := bufio.NewReader(conn)
		say := func(s string) bool {
			_, err := conn.Write([]byte(s))
			return err == nil
		}
		if !say("220 fake.test ESMTP\r\n") {
			return
		}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			verb, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			var reply string
			switch strings.ToUpper(verb) {
			case "EHLO":
				reply = "250-fake.test\r\n250-PIPELINING\r\n250 HELP\r\n"
			case "MAIL":
				reply = "250 2.1.0 Ok\r\n"
			case "RCPT":
				reply = "250 2.1.5 Ok\r\n"
			case "DATA":
				if !say("354 go ahead\r\n") {
					return
				}
				var data []byte
				for !bytes.HasSuffix(data, []byte("\r\n.\r\n")) {
					c, err := br.ReadByte()
					if err != nil {
						return
					}
					data = append(data, c)
				}
				reply = "250 2.0.0 Ok: queued, " + strconv.Itoa(bytes.Count(data, []byte("\n"))) + "\r\n"
			case "QUIT":
				say("221 2.0.0 Bye\r\n")
				return
			case "HANGUP":
				return
			default:
				reply = "500 5.5.2 what?\r\n"
			}
			if !say(reply) {
				return
			}
		}
	}()
}

// playAgainstFake plays src against fakeServer; it returns the client's
// writes, the transcript and Play's error.
func playAgainstFake(t *testing.T, src string) (writes []string, transcript string, err error) {
	t.Helper()
	d, perr := ParseDialogue(strings.NewReader(src))
	if perr != nil {
		t.Fatal(perr)
	}
	clientEnd, serverEnd := net.Pipe()
	fakeServer(t, serverEnd)
	rc := &recordingConn{Conn: clientEnd}
	c := NewClient(rc)
	defer c.Close()
	var tr bytes.Buffer
	c.Transcript = &tr
	err = d.Play(c)
	return rc.written(), tr.String(), err
}

func TestPlayPipelined(t *testing.T) {
	writes, transcript, err := playAgainstFake(t, `S: ^220 fake\.test
C: EHLO client.test
S: ^250-PIPELINING$
C: MAIL FROM:<bob@example.net>
C: RCPT TO:<alice@example.org>
C: RCPT TO:<carol@example.org>
C: DATA
S: ^250 2\.1\.0
S: ^250 2\.1\.5
S: ^250 2\.1\.5
S: ^354
R: "a\n.\nb\r\n"
C: .
S: ^250 2\.0\.0 Ok: queued
C: QUIT
S: ^221
CLOSED
`)
	if err != nil {
		t.Fatalf("Play: %v\ntranscript:\n%s", err, transcript)
	}
	want := []string{
		"EHLO client.test\r\n",
		"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n",
		"a\n.\nb\r\n.\r\n",
		"QUIT\r\n",
	}
	if !slices.Equal(writes, want) {
		t.Errorf("client writes = %q, want %q", writes, want)
	}
	for _, line := range []string{
		"S: 220 fake.test ESMTP",
		"C: EHLO client.test",
		"S: 250-PIPELINING",
		"R: \"a\\n.\\nb\\r\\n\"",
		"C: .",
		"S: 250 2.0.0 Ok: queued, 4",
		"-- connection closed by server",
	} {
		if !strings.Contains(transcript, line+"\n") {
			t.Errorf("transcript lacks %q:\n%s", line, transcript)
		}
	}
}

func TestPlayErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		wantErr []string // parts of the error
	}{
		{
			name:    "mismatch",
			src:     "S: ^220\n# a comment\nC: MAIL FROM:<a@b>\nS: ^251\nC: QUIT\nS: ^221\n",
			wantErr: []string{"dialogue line 4: ", `reply "250 2.1.0 Ok" does not match S: ^251`},
		},
		{
			name:    "mismatch in a multi-line reply",
			src:     "S: ^220\nC: EHLO a\nS: ^250 SMTPUTF8$\n",
			wantErr: []string{"dialogue line 3: ", "250-fake.test\\n250-PIPELINING\\n250 HELP"},
		},
		{
			name:    "mismatch later in a batch",
			src:     "S: ^220\nC: MAIL FROM:<a@b>\nC: NOOP\nS: ^250\nS: ^250\n",
			wantErr: []string{"dialogue line 5: ", "500 5.5.2 what?"},
		},
		{
			name:    "reply where a close is expected",
			src:     "S: ^220\nC: NOOP\nCLOSED\n",
			wantErr: []string{"dialogue line 3: ", `got reply "500 5.5.2 what?", want the connection closed`},
		},
		{
			name:    "close where a reply is expected",
			src:     "S: ^220\nC: HANGUP\nS: ^250\n",
			wantErr: []string{"dialogue line 3: ", "reading reply for S: (?m)^250", "EOF"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, transcript, err := playAgainstFake(t, tc.src)
			if err == nil {
				t.Fatalf("Play succeeded, want an error\ntranscript:\n%s", transcript)
			}
			for _, part := range tc.wantErr {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("Play error = %q, want it to hold %q", err, part)
				}
			}
		})
	}
}

// TestPlayTrailingLines checks that C: lines after the last S: are sent.
func TestPlayTrailingLines(t *testing.T) {
	writes, _, err := playAgainstFake(t, "S: ^220\nC: NOOP\nC: QUIT\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"NOOP\r\nQUIT\r\n"}; !slices.Equal(writes, want) {
		t.Errorf("client writes = %q, want %q", writes, want)
	}
}

// TestPlayStepError checks what a failed step reports: its file and line,
// the step, the command the reply answers (the greeting answers the
// connection; after a 354 the reply answers the dot, however the data was
// sent) and the reply that came.
func TestPlayStepError(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		step    string
		command string
		reply   string
	}{
		{"greeting", "S: ^421\n", "S: ^421", "", "220 fake.test ESMTP"},
		{"in a batch", "S: ^220\nC: MAIL FROM:<a@b>\nC: RCPT TO:<c@d>\nC: NOOP\nS: ^250\nS: ^250\nS: ^251\n",
			"S: ^251", "NOOP", "500 5.5.2 what?"},
		{"end of data", "S: ^220\nC: DATA\nS: ^354\nR: \"a\\n.\\nb\\r\\n..\\r\\n.\\r\\n\"\nC: NOOP\nS: ^251\n",
			"S: ^251", ".", "250 2.0.0 Ok: queued, 5"},
		{"data sent with the command", "S: ^220\nR: \"DATA\\r\\nx\\r\\n.\\r\\nHANGUP\\r\\n\"\nS: ^354\nS: ^251\n",
			"S: ^251", ".", "250 2.0.0 Ok: queued, 2"},
		{"close expected", "S: ^220\nC: NOOP\nCLOSED\n", "CLOSED", "NOOP", "500 5.5.2 what?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, transcript, err := playAgainstFake(t, tc.src)
			var se *StepError
			if !errors.As(err, &se) {
				t.Fatalf("Play error = %v, want a *StepError\ntranscript:\n%s", err, transcript)
			}
			if se.Step != tc.step || se.Command != tc.command || se.Reply != tc.reply {
				t.Errorf("StepError = {Step %q, Command %q, Reply %q}, want {%q, %q, %q}",
					se.Step, se.Command, se.Reply, tc.step, tc.command, tc.reply)
			}
		})
	}
}

// TestAppendNamesFiles checks that a dialogue made of several files names
// the file of the step that failed.
func TestAppendNamesFiles(t *testing.T) {
	head, err := ParseDialogue(strings.NewReader("S: ^220\nC: NOOP\n"))
	if err != nil {
		t.Fatal(err)
	}
	head.Name = "head.dialog"
	tail, err := ParseDialogue(strings.NewReader("# the tail\nS: ^251\n"))
	if err != nil {
		t.Fatal(err)
	}
	tail.Name = "tail.dialog"
	head.Append(tail)
	clientEnd, serverEnd := net.Pipe()
	fakeServer(t, serverEnd)
	c := NewClient(clientEnd)
	defer c.Close()
	err = head.Play(c)
	if err == nil || !strings.HasPrefix(err.Error(), "tail.dialog line 2: ") {
		t.Errorf("Play error = %v, want one naming tail.dialog line 2", err)
	}
}
