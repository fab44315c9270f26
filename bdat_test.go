package smtpd_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// CHUNKING (RFC 3030) from the client's side: messages sent as BDAT
// chunks of every size, chunk boundaries inside a CRLF, chunks that hold
// what DATA would take for an end of data or a command, a client that
// announces more than it sends, the size limit across chunks, and BDAT
// where it does not belong. Each chunk's octets are always read, so the
// session stays in step.

// bdat returns a BDAT command for chunk, with its octets.
func bdat(chunk []byte, last bool) []byte {
	cmd := "BDAT " + strconv.Itoa(len(chunk))
	if last {
		cmd += " LAST"
	}
	return append([]byte(cmd+"\r\n"), chunk...)
}

// chunks cuts msg into BDAT commands of size octets each (the last may be
// shorter), the last one marked LAST, all in one byte slice: a client
// pipelining them all.
func chunks(msg []byte, size int) (wire []byte, n int) {
	for len(msg) > size {
		wire = append(wire, bdat(msg[:size], false)...)
		msg = msg[size:]
		n++
	}
	return append(wire, bdat(msg, true)...), n + 1
}

// bdatMessage returns a message of at least n octets, with the header
// fields the server would otherwise add, whose body holds what must stay
// data: lines that start with dots, DATA's end marker, bare CRs and LFs,
// NULs and 8-bit octets, and a command.
func bdatMessage(n int) []byte {
	msg := bytes.Clone(interopMessage("bdat", interopTo))
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	tricky := []string{".\r\n", "..\r\n", "\r\n.\r\n", "MAIL FROM:<eve@example.net>\r\n", "bare\nLF\r\n", "bare\rCR\r\n", "\x00\xff\xfe\r\n"}
	for i := 0; len(msg) < n; i++ {
		if i%7 == 0 {
			msg = append(msg, tricky[rng.IntN(len(tricky))]...)
			continue
		}
		word := []byte(strconv.Itoa(rng.IntN(1000)) + " ")
		msg = append(append(msg, bytes.Repeat(word, 1+rng.IntN(40))...), "\r\n"...)
	}
	return msg
}

// bdatClient connects to addr and opens a transaction to rcpts with EHLO
// and MAIL (with params).
func bdatClient(t *testing.T, addr string, params string, rcpts ...string) *client.Client {
	t.Helper()
	c := dialReady(t, addr, "chunks.test")
	cmds := []string{"MAIL FROM:<" + interopFrom + ">" + params}
	for _, to := range rcpts {
		cmds = append(cmds, "RCPT TO:<"+to+">")
	}
	if err := c.Send(cmds...); err != nil {
		t.Fatal(err)
	}
	for range cmds {
		expectReply(t, c, 250, "")
	}
	return c
}

// TestBDATChunkSizes sends messages as chunks of 1 octet to 1 MiB, all
// pipelined or one at a time, and checks that each is stored exactly as
// sent, with BODY=BINARYMIME since the body holds NULs and bare LFs.
func TestBDATChunkSizes(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, 2, 3, 511, 4095, 4096, 4097, 65536, 1 << 20} {
		for _, lockstep := range []bool{false, true} {
			if lockstep && size < 4095 {
				continue // thousands of round trips tell nothing more
			}
			name := fmt.Sprintf("%d/pipelined", size)
			if lockstep {
				name = fmt.Sprintf("%d/lockstep", size)
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ts := smtpdtest.NewServer(t)
				msg := bdatMessage(max(size+size/2, 1500))
				c := bdatClient(t, ts.Addr, " BODY=BINARYMIME", interopTo)
				if lockstep {
					for rest := msg; len(rest) > 0; {
						chunk := rest[:min(size, len(rest))]
						rest = rest[len(chunk):]
						if err := c.SendRaw(bdat(chunk, len(rest) == 0)); err != nil {
							t.Fatal(err)
						}
						if len(rest) > 0 {
							expectReply(t, c, 250, "2.0.0")
						}
					}
				} else {
					wire, n := chunks(msg, size)
					if err := c.SendRaw(wire); err != nil {
						t.Fatal(err)
					}
					for range n - 1 {
						expectReply(t, c, 250, "2.0.0")
					}
				}
				r := expectReply(t, c, 250, "2.0.0")
				if !strings.HasPrefix(r.Lines[0], "Ok: queued as ") {
					t.Fatalf("last chunk: %q, want queued", r)
				}
				checkDelivered(t, ts, "chunks.test", msg, interopFrom, interopTo)
			})
		}
	}
}

// TestBDATBoundaries puts chunk boundaries where DATA would see something:
// inside a CRLF, before a dot that starts a line, around DATA's end marker
// and a command in the data. All of it is message data, stored with each
// CRLF (split or not) as LF, and no second message appears.
func TestBDATBoundaries(t *testing.T) {
	t.Parallel()
	ts := smtpdtest.NewServer(t)
	c := bdatClient(t, ts.Addr, "", interopTo)
	parts := []string{
		"Subject: split\r\n\r\nline one\r",
		"\n.starts with a dot\r\n\r",
		"\n.\r",
		"\nMAIL FROM:<eve@example.net>\r\nRCPT TO:<eve@example.org>\r\nDATA\r\n",
		"last line\r",
		"\n",
	}
	var wire []byte
	for i, p := range parts {
		wire = append(wire, bdat([]byte(p), i == len(parts)-1)...)
	}
	if err := c.SendRaw(wire); err != nil {
		t.Fatal(err)
	}
	for range len(parts) - 1 {
		expectReply(t, c, 250, "2.0.0")
	}
	expectReply(t, c, 250, "2.0.0")
	if r, err := c.Cmd("NOOP"); err != nil || r.Code != 250 {
		t.Fatalf("NOOP after the message: %v %v", r, err)
	}
	msgs, err := ts.WaitMessages(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	sent := strings.Join(parts, "")
	if got := string(msgs[0].Data); got != sent {
		t.Errorf("Message.Data = %q, want %q", got, sent)
	}
	stored, err := os.ReadFile(msgs[0].Paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := "\n\nline one\n.starts with a dot\n\n.\nMAIL FROM:<eve@example.net>\nRCPT TO:<eve@example.org>\nDATA\nlast line\n"; !bytes.HasSuffix(stored, []byte(want)) {
		t.Errorf("stored message ends %q, want %q", stored[max(0, len(stored)-len(want)):], want)
	}
	if len(ts.Messages()) != 1 {
		t.Errorf("%d messages stored, want 1", len(ts.Messages()))
	}
	if _, err := os.Stat(filepath.Join(ts.MaildirRoot, "eve")); err == nil {
		t.Error("a mailbox for eve exists: data was taken for commands")
	}
}

// TestBDATShortChunkThenDisconnect announces more octets than it sends and
// hangs up, in a middle chunk and in the last: nothing is stored, nothing
// is left in tmp/, and the trace counts the octets that came, not those
// announced.
func TestBDATShortChunkThenDisconnect(t *testing.T) {
	t.Parallel()
	for _, last := range []bool{false, true} {
		t.Run(fmt.Sprintf("last=%v", last), func(t *testing.T) {
			t.Parallel()
			trace := newSyncBuffer()
			ts := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{Trace: trace, Verbose: true}))
			c := bdatClient(t, ts.Addr, "", interopTo)
			cmd := "BDAT 1000\r\n"
			if last {
				cmd = "BDAT 1000 LAST\r\n"
			}
			if err := c.SendRaw(append(bdat([]byte("Subject: cut\r\n\r\n"), false), cmd+"only this much"...)); err != nil {
				t.Fatal(err)
			}
			expectReply(t, c, 250, "2.0.0") // the first chunk
			c.Close()
			if !trace.WaitMatch(regexp.MustCompile(`disconnected during message data`), 10*time.Second) {
				t.Fatalf("the server did not see the disconnection:\n%s", trace.bytes())
			}
			ts.Close()
			// 16 octets in the first chunk, 14 of the second's 1000.
			got := string(trace.bytes())
			for _, want := range []string{
				"chunk of 1000 octets announced, 14 received; 30 octets of message so far",
				"message data: 30 octets",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("the trace does not say %q:\n%s", want, got)
				}
			}
			box := filepath.Join(ts.MaildirRoot, "alice")
			for _, sub := range []string{"tmp", "new"} {
				if names := dirNames(t, filepath.Join(box, sub)); len(names) != 0 {
					t.Errorf("%s/ holds %q, want nothing", sub, names)
				}
			}
			if n := len(ts.Messages()); n != 0 {
				t.Errorf("%d messages stored, want none", n)
			}
		})
	}
}

// TestBDATSizeAcrossChunks goes over the size limit in the second chunk:
// that chunk gets 552 5.3.4 once read, the next BDAT 503 5.5.1 until RSET,
// and the session stays in step: the chunks' octets, commands among them,
// are never taken for commands, and the next transaction works.
func TestBDATSizeAcrossChunks(t *testing.T) {
	t.Parallel()
	ts := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{MaxMessageBytes: 1000}))
	c := bdatClient(t, ts.Addr, "", interopTo)
	filler := func(n int) []byte {
		return bytes.Repeat([]byte("QUIT\r\n"), n/6)
	}
	var wire []byte
	wire = append(wire, bdat(filler(600), false)...)
	wire = append(wire, bdat(filler(600), false)...)
	wire = append(wire, bdat(filler(60), true)...)
	wire = append(wire, "RSET\r\nMAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\n"...)
	wire = append(wire, bdat([]byte("Subject: fits\r\n\r\nsmall\r\n"), true)...)
	if err := c.SendRaw(wire); err != nil {
		t.Fatal(err)
	}
	expectReply(t, c, 250, "2.0.0") // 600 octets: fits
	expectReply(t, c, 552, "5.3.4") // 1200: over the limit
	expectReply(t, c, 503, "5.5.1") // refused until RSET
	expectReply(t, c, 250, "2.0.0") // RSET
	expectReply(t, c, 250, "2.1.0")
	expectReply(t, c, 250, "2.1.5")
	if r := expectReply(t, c, 250, "2.0.0"); !strings.HasPrefix(r.Lines[0], "Ok: queued as") {
		t.Fatalf("the next message: %q", r)
	}
	// One chunk over the limit on its own, in a new transaction.
	c.Send("MAIL FROM:<bob@example.net>", "RCPT TO:<alice@example.org>")
	expectReply(t, c, 250, "2.1.0")
	expectReply(t, c, 250, "2.1.5")
	c.SendRaw(append(bdat(filler(1200), true), "NOOP\r\n"...))
	expectReply(t, c, 552, "5.3.4")
	expectReply(t, c, 250, "2.0.0")
	msgs, err := ts.WaitMessages(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || !bytes.Contains(msgs[0].Data, []byte("small")) {
		t.Errorf("stored %d messages, want only the small one", len(msgs))
	}
}

// TestBDATRefused sends BDAT where it does not belong, and DATA and RCPT
// where CHUNKING rules them out. Each gets its 5xx, the chunk it announced
// is read and thrown away (it holds a QUIT that must not be taken), and
// the session goes on: NOOP gets 250.
func TestBDATRefused(t *testing.T) {
	t.Parallel()
	chunk := bdat([]byte("QUIT\r\n"), false)
	tests := []struct {
		name  string
		setup []string // commands before, each answered 2xx
		send  []byte
		code  int
		enh   string
	}{
		{name: "before EHLO", send: chunk, code: 503, enh: "5.5.1"},
		{name: "after HELO", setup: []string{"HELO client.test"}, send: chunk, code: 503, enh: "5.5.1"},
		{name: "without MAIL", setup: []string{"EHLO client.test"}, send: chunk, code: 503, enh: "5.5.1"},
		{name: "without RCPT", setup: []string{"EHLO client.test", "MAIL FROM:<bob@example.net>"}, send: chunk, code: 503, enh: "5.5.1"},
		{name: "DATA after BDAT", setup: []string{"EHLO client.test", "MAIL FROM:<bob@example.net>", "RCPT TO:<alice@example.org>"},
			send: append(bdat([]byte("x"), false), "DATA\r\n"...), code: 503, enh: "5.5.1"},
		{name: "RCPT after BDAT", setup: []string{"EHLO client.test", "MAIL FROM:<bob@example.net>", "RCPT TO:<alice@example.org>"},
			send: append(bdat([]byte("x"), false), "RCPT TO:<carol@example.org>\r\n"...), code: 503, enh: "5.5.1"},
		{name: "DATA with BINARYMIME", setup: []string{"EHLO client.test", "MAIL FROM:<bob@example.net> BODY=BINARYMIME", "RCPT TO:<alice@example.org>"},
			send: []byte("DATA\r\n"), code: 503, enh: "5.5.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := smtpdtest.NewServer(t)
			c, _ := dialGreeted(t, ts.Addr)
			for _, cmd := range tc.setup {
				if r, err := c.Cmd(cmd); err != nil || r.Class() != 2 {
					t.Fatalf("%s: %v %v", cmd, r, err)
				}
			}
			if err := c.SendRaw(append(tc.send, "NOOP\r\n"...)); err != nil {
				t.Fatal(err)
			}
			if bytes.HasPrefix(tc.send, []byte("BDAT 1\r\n")) {
				expectReply(t, c, 250, "2.0.0") // the chunk before DATA or RCPT
			}
			expectReply(t, c, tc.code, tc.enh)
			expectReply(t, c, 250, "2.0.0") // NOOP: still in step
		})
	}
}

// TestBDATBadSize: a BDAT whose size cannot be read leaves no way to find
// where its chunk ends, so the server answers 501 and hangs up rather than
// take the chunk for commands.
func TestBDATBadSize(t *testing.T) {
	t.Parallel()
	ts := smtpdtest.NewServer(t)
	c := bdatClient(t, ts.Addr, "", interopTo)
	if err := c.SendRaw([]byte("BDAT 12x\r\nRSET\r\nQUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	expectReply(t, c, 501, "5.5.4")
	if r, err := c.ReadReply(); err == nil {
		t.Fatalf("after 501 the server answered %q; want the connection closed", r)
	}
}

// TestBDATAbandoned: RSET, or a new EHLO, in the middle of a chunked
// message abandons it; nothing is stored or left in tmp/.
func TestBDATAbandoned(t *testing.T) {
	t.Parallel()
	for _, abandon := range []string{"RSET", "EHLO again.test"} {
		t.Run(abandon, func(t *testing.T) {
			t.Parallel()
			ts := smtpdtest.NewServer(t)
			c := bdatClient(t, ts.Addr, "", interopTo)
			c.SendRaw(bdat([]byte("Subject: abandoned\r\n\r\n"), false))
			expectReply(t, c, 250, "2.0.0")
			if r, err := c.Cmd(abandon); err != nil || r.Code != 250 {
				t.Fatalf("%s: %v %v", abandon, r, err)
			}
			if r, err := c.Cmd("MAIL FROM:<bob@example.net>"); err != nil || r.Code != 250 {
				t.Fatalf("MAIL after %s: %v %v", abandon, r, err)
			}
			for _, sub := range []string{"tmp", "new"} {
				if names := dirNames(t, filepath.Join(ts.MaildirRoot, "alice", sub)); len(names) != 0 {
					t.Errorf("%s/ holds %q after %s", sub, names, abandon)
				}
			}
		})
	}
}
