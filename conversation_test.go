package smtpd_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/txtar"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
)

// The conversation as the client sees it: every reply reaches the client,
// in time, and the trace says what really crossed the wire.

// originalDialogue returns a dialogue file of a testdata/script/original_*
// script.
func originalDialogue(t *testing.T, script, name string) string {
	t.Helper()
	a, err := txtar.ParseFile(filepath.Join("testdata", "script", script))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range a.Files {
		if f.Name == name {
			return string(f.Data)
		}
	}
	t.Fatalf("%s has no file %s", script, name)
	return ""
}

// playOnce plays a dialogue once against addr.
func playOnce(addr, dialogue string) (string, error) {
	d, err := client.ParseDialogue(strings.NewReader(dialogue))
	if err != nil {
		return "", err
	}
	c, err := client.Dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var transcript bytes.Buffer
	c.Transcript = &transcript
	c.Timeout = secWait
	err = d.Play(c)
	return transcript.String(), err
}

// TestOriginalExamples replays the original project's three example
// sessions as its report ran them, with default flags: the first typed one
// command at a time, the second piped whole into ncat -C right after
// connecting (in ONE write, before the greeting), the third an error
// session. The second, and its bare-LF forms, 100 times each: every reply
// must come back every time.
func TestOriginalExamples(t *testing.T) {
	ts := startSec(t, smtpd.Config{Hostname: "mx.test"})
	tests := []struct {
		script, dialogue string
		runs             int
	}{
		{"original_helo.txtar", "helo.dialog", 1},
		{"original_pipelined.txtar", "pipelined.dialog", 100},
		{"original_pipelined.txtar", "pipelined_lf.dialog", 100},
		{"original_pipelined.txtar", "pipelined_lf_file.dialog", 100},
		{"original_errors.txtar", "errors.dialog", 1},
	}
	for _, tc := range tests {
		t.Run(tc.dialogue, func(t *testing.T) {
			dialogue := originalDialogue(t, tc.script, tc.dialogue)
			failed := 0
			for i := range tc.runs {
				if transcript, err := playOnce(ts.Addr, dialogue); err != nil {
					failed++
					if failed == 1 {
						t.Errorf("run %d: %v\n%s", i+1, err, transcript)
					}
				}
			}
			if failed > 0 {
				t.Errorf("%d of %d runs failed", failed, tc.runs)
			}
		})
	}
	if trace := ts.trace.bytes(); bytes.Contains(trace, []byte("S: 554")) {
		t.Errorf("a client was refused for talking first:\n%s", trace)
	}
}

// TestOriginalExampleNcat runs the original's second example exactly as
// its report does, cat mail.txt | ncat -C, 100 times, and as many with
// nc -C.
func TestOriginalExampleNcat(t *testing.T) {
	ts := startSec(t, smtpd.Config{Hostname: "mx.test", Trace: io.Discard})
	mail := "EHLO pc.itba.edu.ar\nMAIL FROM:<pepe@itba.edu.ar>\nRCPT TO:<juan@itba.edu.ar>\nDATA\n" +
		"Subject: Hola\n\nEsto es un mail de prueba.\n.\nQUIT\n"
	host, port, _ := net.SplitHostPort(ts.Addr)
	want := regexp.MustCompile(`(?s)^220 .*\n250-mx\.test\r\n(250-.*\r\n)*250 [^\n]*\n250 2\.1\.0 Ok\r\n250 2\.1\.5 Ok\r\n354 [^\n]*\n250 2\.0\.0 Ok: queued as [A-Z2-7]{13}\r\n221 2\.0\.0 Bye\r\n$`)
	tools := []struct {
		name, pkg string
		args      []string
	}{
		{"ncat", "ncat", []string{"-C", host, port}},
		// -N, not -q 2 as by hand: nc then ends at the server's close,
		// not 2 s after its input.
		{"nc", "netcat-openbsd", []string{"-C", "-N", host, port}},
	}
	for _, tool := range tools {
		t.Run(tool.name, func(t *testing.T) {
			path := requirePeer(t, tool.name, tool.pkg)
			var (
				wg     sync.WaitGroup
				mu     sync.Mutex
				failed int
				sem    = make(chan struct{}, 4) // four at a time
			)
			for i := range 100 {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					out, err := runTool(t, []byte(mail), path, tool.args...)
					if err == nil && want.Match(out) {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if failed++; failed == 1 {
						t.Errorf("run %d: %v\n%s", i+1, err, out)
					}
				})
			}
			wg.Wait()
			if failed > 0 {
				t.Errorf("%d of 100 runs failed", failed)
			}
		})
	}
}

// runTool runs a client program with stdin and returns its standard output.
func runTool(t *testing.T, stdin []byte, path string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), secWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.Bytes())
	}
	return out, err
}

// TestRefusalReachesClient: under GreetDelay, a client that sends 100 KiB
// before the greeting, as cat file | nc does, then reads, gets the whole 554
// line and an orderly end every time. The server used to close with the
// client's input unread, which made the kernel reset the connection: the
// client's write failed ("connection reset by peer"), and a client such as
// nc gave up without showing the reply.
func TestRefusalReachesClient(t *testing.T) {
	ts := startSec(t, smtpd.Config{GreetDelay: time.Minute})
	const want = "554 5.5.0 smtpd.test Error: you spoke before the greeting, closing connection\r\n"
	input := bytes.Repeat([]byte("EHLO early.test\r\n"), 100<<10/17)
	failed := 0
	for i := range 50 {
		if err := talkFirst(ts.Addr, input, want); err != nil {
			failed++
			if failed == 1 {
				t.Errorf("run %d: %v", i+1, err)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of 50 runs failed", failed)
	}
}

// talkFirst connects, writes input at once, and then reads: the line want,
// and the end of the stream.
func talkFirst(addr string, input []byte, want string) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(secWait))
	if _, err := conn.Write(input); err != nil {
		return fmt.Errorf("writing before the greeting: %w", err)
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if line != want {
		return fmt.Errorf("got %q (%v), want %q", line, err, want)
	}
	if more, err := br.ReadString('\n'); err != io.EOF {
		return fmt.Errorf("after the reply: %q, %v; want the end of the stream", more, err)
	}
	return nil
}

// TestEveryCloseReachesClient: whatever makes the server close a
// connection, a client that sent more than the server read (32 KiB here)
// gets the last reply and an orderly end of the stream, never a reset.
func TestEveryCloseReachesClient(t *testing.T) {
	more := bytes.Repeat([]byte("NOOP and more\r\n"), 32<<10/15)
	tests := []struct {
		name  string
		cfg   smtpd.Config
		hold  bool // one session is open already
		input string
		last  string
	}{
		{"too many errors", smtpd.Config{}, false, strings.Repeat("BOGUS\r\n", 10), "421 4.7.0 "},
		{"QUIT", smtpd.Config{}, false, "QUIT\r\n", "221 2.0.0 Bye"},
		{"HTTP", smtpd.Config{}, false, "GET / HTTP/1.1\r\n", "500 5.5.2 Error: this is an SMTP server"},
		{"MaxConns", smtpd.Config{MaxConns: 1}, true, "EHLO client.test\r\n", "421 4.3.2 "},
		{"MaxConnsPerIP", smtpd.Config{MaxConnsPerIP: 1}, true, "EHLO client.test\r\n", "421 4.7.0 "},
		{"GreetDelay", smtpd.Config{GreetDelay: time.Minute}, false, "EHLO client.test\r\n", "554 5.5.0 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startSec(t, tc.cfg)
			if tc.hold {
				secDial(t, ts.Addr, nil)
			}
			lines, err := converse(ts.Addr, append([]byte(tc.input), more...))
			if err != io.EOF {
				t.Errorf("the connection ended with %v, want the end of the stream, after:\n%s", err, strings.Join(lines, ""))
			}
			if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], tc.last) {
				t.Errorf("the last reply is not %q:\n%s", tc.last, strings.Join(lines, ""))
			}
		})
	}
}

// converse connects, writes input at once, and then reads every line the
// server sends, until the stream ends.
func converse(addr string, input []byte) ([]string, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(secWait))
	if _, err := conn.Write(input); err != nil {
		return nil, fmt.Errorf("writing: %w", err)
	}
	br := bufio.NewReader(conn)
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return lines, err
		}
		lines = append(lines, line)
	}
}

// hungUp returns a server and a client the server has just hung up on with
// 421 (too many errors), which stays connected.
func hungUp(t *testing.T) (*secServer, *client.Client) {
	t.Helper()
	ts := startSec(t, smtpd.Config{MaxErrors: 1})
	c := secDial(t, ts.Addr, nil)
	secCmd(t, c, "BOGUS", "500 5.5.2")
	secExpect(t, c, "421 4.7.0")
	return ts, c
}

// TestHangUpBounded: a client that keeps sending after the server's last
// reply is read for a bounded time only: the server ends its side at once
// (EOF), and closes within a second.
func TestHangUpBounded(t *testing.T) {
	_, c := hungUp(t)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := c.SendRaw([]byte("NOOP\r\n")); err != nil {
				done <- err
				return
			}
		}
	}()
	secExpectEOF(t, c)
	start := time.Now()
	select {
	case err := <-done:
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the server read on for %v after its reply", d)
		}
		t.Logf("the client's writes failed after %v: %v", time.Since(start), err)
	case <-time.After(secWait):
		close(stop)
		<-done
		t.Errorf("the server still reads after %v", secWait)
	}
}

// TestHangUpAndStop: Close does not wait for a graceful close to end, and
// Shutdown waits for it no longer than its second.
func TestHangUpAndStop(t *testing.T) {
	stops := []struct {
		name string
		stop func(*smtpd.Server) error
		max  time.Duration
	}{
		{"Close", (*smtpd.Server).Close, 500 * time.Millisecond},
		{"Shutdown", func(srv *smtpd.Server) error { return srv.Shutdown(t.Context()) }, 3 * time.Second},
	}
	for _, tc := range stops {
		t.Run(tc.name, func(t *testing.T) {
			ts, c := hungUp(t)
			secExpectEOF(t, c) // the server's side is closed; it waits for ours
			start := time.Now()
			if err := tc.stop(ts.SMTP); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > tc.max {
				t.Errorf("%s took %v", tc.name, d)
			}
		})
	}
}

// TestRepliesBeforeWaiting: every reply is sent before the server waits for
// more input, in command mode and in message data, even when a read ended
// in the middle of a line.
func TestRepliesBeforeWaiting(t *testing.T) {
	ts := startSec(t, smtpd.Config{})
	t.Run("command", func(t *testing.T) {
		c := secDial(t, ts.Addr, nil)
		secCmd(t, c, "EHLO client.test", "250")
		c.SendRaw([]byte("NOOP\r\nNO")) // and wait, mid-line
		secExpect(t, c, "250 2.0.0")
		c.SendRaw([]byte("OP\r\n"))
		secExpect(t, c, "250 2.0.0")
	})
	t.Run("data", func(t *testing.T) {
		c := secDial(t, ts.Addr, nil)
		secCmd(t, c, "EHLO client.test", "250")
		secCmd(t, c, "MAIL FROM:<bob@example.net>", "250")
		secCmd(t, c, "RCPT TO:<alice@example.org>", "250")
		c.SendRaw([]byte("DATA\r\nSubject: x\r\n\r\npartial")) // and wait
		secExpect(t, c, "354")
		c.SendRaw([]byte(" message\r\n.\r\n"))
		secExpect(t, c, "250 2.0.0")
	})
}

// pipeListener is a net.Listener whose connections are in-memory pipes,
// which hold nothing: a write waits until the other side reads all of it.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial returns the client's end of a new connection.
func (l *pipeListener) dial() net.Conn {
	server, c := net.Pipe()
	l.conns <- server
	return c
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// startPipeServer serves cfg on a pipeListener.
func startPipeServer(t *testing.T, cfg smtpd.Config) (*smtpd.Server, *pipeListener) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "smtpd.test"
	}
	srv, err := smtpd.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	return srv, l
}

// TestFloodWithoutReading: a client that pipelines commands without ever
// reading a reply, each write ending in the middle of a line, does not make
// the server pile up replies: once it holds 4 KiB of them it waits for the
// client to take them, and reads nothing more meanwhile. Over a pipe, which
// holds nothing, the client can then write little more than what one read
// of the server took. (The server used to read on, keeping every reply: 10
// MiB of HELP took it to 1.4 GiB.)
func TestFloodWithoutReading(t *testing.T) {
	_, l := startPipeServer(t, smtpd.Config{})
	c := l.dial()
	defer c.Close()
	c.SetDeadline(time.Now().Add(secWait))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	// EHLO is not a command that makes no progress (junkCommand): only the
	// output bound stops this flood. Its reply is ~20 times its size.
	flood := bytes.Repeat([]byte("EHLO flood.test\r\n"), 1<<20/17)
	const chunk = 1000 // not a multiple of the line: writes end mid-line
	written := 0
	c.SetWriteDeadline(time.Now().Add(time.Second))
	for written < len(flood) {
		n, err := c.Write(flood[written:min(written+chunk, len(flood))])
		written += n
		if err != nil {
			break
		}
	}
	t.Logf("the client wrote %d octets before the server stopped reading", written)
	// One read buffer (4 KiB) of input, whose replies fill the 4 KiB
	// bound long before it is used up, and the write it came in.
	if limit := 4096 + chunk; written > limit {
		t.Errorf("the server read %d octets without the client reading a reply; want at most %d", written, limit)
	}
}

// TestJunkCommandLimit: commands that make no progress (NOOP, RSET, HELP,
// VRFY) count as errors past 100 without a message: a flood of them is
// closed with 421 after MaxErrors more. A delivered message starts the
// count again.
func TestJunkCommandLimit(t *testing.T) {
	ts := startSec(t, smtpd.Config{})
	c := secDial(t, ts.Addr, nil)
	secCmd(t, c, "EHLO client.test", "250")
	for range 99 {
		secCmd(t, c, "NOOP", "250")
	}
	secSend(t, c, "bob@example.net", "alice@example.org")
	// A pipelined flood of HELP, read as it comes.
	go c.SendRaw(bytes.Repeat([]byte("HELP\r\n"), 200))
	helps := 0
	for {
		r, err := c.ReadReply()
		if err != nil {
			t.Fatalf("after %d HELP replies: %v", helps, err)
		}
		if r.Code != 214 {
			if !strings.HasPrefix(r.String(), "421 4.7.0") {
				t.Errorf("got %q, want 421 4.7.0", r.String())
			}
			break
		}
		helps++
	}
	if want := 100 + smtpd.DefaultMaxErrors; helps != want {
		t.Errorf("%d HELP answered before the 421, want %d", helps, want)
	}
	secExpectEOF(t, c)
}

// TestTraceTruth: the trace shows what crossed the wire, no more: a client
// that disconnects in the middle of a message is not traced sending the
// final dot, and a reply that could not be written is marked.
func TestTraceTruth(t *testing.T) {
	t.Run("disconnect in data", func(t *testing.T) {
		ts := startSec(t, smtpd.Config{})
		c := secDial(t, ts.Addr, nil)
		secCmd(t, c, "EHLO client.test", "250")
		secCmd(t, c, "MAIL FROM:<bob@example.net>", "250")
		secCmd(t, c, "RCPT TO:<alice@example.org>", "250")
		secCmd(t, c, "DATA", "354")
		c.SendRaw([]byte("Subject: cut\r\n\r\nhalf a mess"))
		c.Close()
		if !ts.trace.WaitMatch(regexp.MustCompile(`disconnected during message data`), secWait) {
			t.Fatalf("no disconnection traced:\n%s", ts.trace.bytes())
		}
		trace := string(ts.trace.bytes())
		if strings.Contains(trace, "C: .\n") {
			t.Errorf("the trace shows a final dot the client never sent:\n%s", trace)
		}
		for _, want := range []string{"C: half a mess\n", "without the end-of-data line"} {
			if !strings.Contains(trace, want) {
				t.Errorf("the trace lacks %q:\n%s", want, trace)
			}
		}
	})
	t.Run("reply not sent", func(t *testing.T) {
		trace := newSyncBuffer()
		_, l := startPipeServer(t, smtpd.Config{Trace: trace, Verbose: true, TraceColor: smtpd.ColorNever})
		c := l.dial()
		greeting := make([]byte, 64)
		if _, err := c.Read(greeting); err != nil {
			t.Fatal(err)
		}
		// The pipe holds nothing: the reply can only be written while
		// the client reads, and it has gone.
		c.Write([]byte("NOOP\r\n"))
		c.Close()
		if !trace.WaitMatch(regexp.MustCompile(`S: 250 2\.0\.0 Ok\n.*\* the reply above was not sent: `), secWait) {
			t.Errorf("the unsent reply is not marked:\n%s", trace.bytes())
		}
	})
}

// TestTranscriptBounded: with Config.Delivered set, the session's
// transcript keeps its beginning and the transaction, and summarizes the
// rest in one line, however long the session.
func TestTranscriptBounded(t *testing.T) {
	ts := startSec(t, smtpd.Config{Trace: io.Discard})
	c := secDial(t, ts.Addr, nil)
	for range 2000 {
		secCmd(t, c, "EHLO client.test", "250")
	}
	secSend(t, c, "bob@example.net", "alice@example.org")
	m := secOnlyMessage(t, ts.Server)
	transcript := m.Transcript()
	if n := len(transcript); n > 500 {
		t.Errorf("the transcript has %d lines", n)
	}
	var lines []string
	for _, l := range transcript {
		lines = append(lines, l.String())
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		"* connected from",                         // the beginning
		"S: 220 smtpd.test ESMTP smtpd",            //
		"lines omitted",                            // the summary
		"C: MAIL FROM:<bob@example.net>",           // the transaction
		"C: RCPT TO:<alice@example.org>",           //
		"C: <message data: 33 octets>\nC: .",       //
		"S: 354 End data with <CR><LF>.<CR><LF>\n", //
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the transcript lacks %q:\n%s", want, text)
		}
	}
	summary := regexp.MustCompile(`\* … (\d+) lines omitted`).FindStringSubmatch(text)
	if summary == nil {
		t.Fatalf("no summary line:\n%s", text)
	}
	// 2000 EHLO, each 1 client and 7 reply lines.
	var omitted int
	fmt.Sscan(summary[1], &omitted)
	if total := omitted + len(transcript) - 1; total < 16000 {
		t.Errorf("%d lines omitted and %d kept: fewer than the session's", omitted, len(transcript))
	}
}

// TestRedactAfterRefusedAuth: a client that does not wait for AUTH to be
// refused sends its credentials as if they were commands; they never reach
// the trace, the transcript or the logs. Neither does what follows AUTH when
// it is not a mechanism, nor more than a few octets of any line that is not
// a command.
func TestRedactAfterRefusedAuth(t *testing.T) {
	ts := startSec(t, smtpd.Config{Authenticate: testUsers(t).Authenticate})
	const (
		user       = "YWxpY2U="                 // alice
		password   = "Y29ycmVjdCBob3JzZQ=="     // correct horse
		misplaced  = "AGJvYgBodW50ZXIyMzQ1"     // \0bob\0hunter2345
		afterFail  = "aHVudGVyMg=="             // hunter2
		notCommand = "hunter2 is my password"   // typed at the wrong prompt
		plainIR    = "AGFsaWNlAGh1bnRlcjIzNDU=" // \0alice\0hunter2345
	)
	c := secDial(t, ts.Addr, nil)
	secCmd(t, c, "EHLO client.test", "250")
	// AUTH without TLS gets 538, and the client's base64 lines are
	// taken for commands.
	c.Send("AUTH LOGIN", user, password, "MAIL FROM:<bob@example.net>")
	secExpect(t, c, "538 5.7.11")
	secExpect(t, c, "500 5.5.2")
	secExpect(t, c, "500 5.5.2")
	secExpect(t, c, "250 2.1.0")
	secCmd(t, c, "RSET", "250")
	secCmd(t, c, "AUTH "+misplaced, "538")
	secCmd(t, c, "AUTH PLAIN "+plainIR, "538")
	secCmd(t, c, afterFail, "500")
	secCmd(t, c, "NOOP", "250")
	secCmd(t, c, notCommand, "500")
	secSend(t, c, "bob@example.net", "alice@example.org")
	secCmd(t, c, "QUIT", "221")
	m := secOnlyMessage(t, ts.Server)
	var transcript bytes.Buffer
	for _, l := range m.Transcript() {
		transcript.WriteString(l.String() + "\n")
	}
	if !ts.trace.WaitMatch(regexp.MustCompile(`server hangs up`), secWait) {
		t.Fatal("the session did not end")
	}
	trace := ts.trace.bytes()
	for name, what := range map[string][]byte{"trace": trace, "transcript": transcript.Bytes(), "logs": ts.logs.bytes()} {
		mustNotContain(t, name, what, user, password, misplaced, afterFail, plainIR, "hunter2", "my password",
			"YWxp", "Y29y", "AGJv", "aHVu")
	}
	for _, want := range []string{
		"C: AUTH LOGIN\n",
		"C: <redacted>\n",
		"C: AUTH <redacted>\n",
		"C: AUTH PLAIN <redacted>\n",
		"C: NOOP\n",
		"C: hunt… <22 octets>\n",
	} {
		if !bytes.Contains(trace, []byte(want)) {
			t.Errorf("the trace lacks %q:\n%s", want, trace)
		}
	}
}
