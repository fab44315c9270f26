package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd/smtpdtest"
)

// The interop tests deliver one message with SMTP clients nobody here wrote —
// swaks, curl, msmtp and Go's net/smtp — and check that it is stored byte for
// byte: the stored file is the server's Return-Path and Received fields
// followed by the message as sent, each CRLF turned into LF (as the README's
// Specification section says). The message has every header field the server
// could add, so those two are all it adds.

// peersEnv, when set to 1, turns a missing client program into a failure
// instead of a skip; CI sets it after installing the Debian packages.
const peersEnv = "SMTPD_REQUIRE_PEERS"

// requirePeer returns the path of the client program name, which Debian
// ships in package pkg, or skips the test when it is missing (fails it
// when SMTPD_REQUIRE_PEERS=1).
func requirePeer(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(peersEnv) == "1" {
		t.Fatalf("%s not found and %s=1: install the Debian package %q (%v)", name, peersEnv, pkg, err)
	}
	t.Skipf("%s not installed (Debian package %q; set %s=1 to make this a failure)", name, pkg, peersEnv)
	return ""
}

const (
	interopFrom = "bob@example.net"
	interopTo   = "alice@example.org"
	interopCc   = "carol@example.org"
)

// interopMessage returns the message the interop tests send, in its wire
// form (CRLF line endings, no dot-stuffing): complete headers, 8-bit UTF-8
// text, lines starting with a dot, an empty line inside the body and a line
// of 998 octets, the longest RFC 5321 §4.5.3.1.6 allows. It holds no '%'
// or backslash, which swaks would take for its own escapes.
func interopMessage(tool string, to ...string) []byte {
	long := strings.Repeat("0123456789", 100)[:998-len("long:")]
	lines := []string{
		"From: Bob Sender <" + interopFrom + ">",
		"To: " + strings.Join(to, ", "),
		"Subject: interop with " + tool + " =?utf-8?q?ol=C3=A1?=",
		"Date: Mon, 02 Jan 2006 15:04:05 -0700",
		"Message-ID: <interop." + tool + "@example.net>",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: 8bit",
		"",
		"Olá Alice, ça va? Ünïcödé, 日本語, Ελληνικά, emoji 📬.",
		".a line that starts with a dot",
		"..and one with two",
		". and a dot with a space",
		"",
		"long:" + long,
		"\ttab-indented line with trailing spaces   ",
		"-- ",
		"Bob",
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// storedForm is what the server stores of a message after its own header
// fields: the wire form with each CRLF turned into LF.
func storedForm(wire []byte) []byte { return bytes.ReplaceAll(wire, []byte("\r\n"), []byte("\n")) }

// splitTraceFields splits a stored message into the server's leading
// Return-Path field, its Received field (with continuation lines, without
// the final LF) and the rest; it fails the test if they are not there.
func splitTraceFields(t *testing.T, stored []byte) (returnPath, received string, rest []byte) {
	t.Helper()
	returnPath, received, rest, err := cutTraceFields(stored)
	if err != nil {
		t.Fatalf("%v:\n%s", err, stored)
	}
	return returnPath, received, rest
}

// cutTraceFields is splitTraceFields returning an error.
func cutTraceFields(stored []byte) (returnPath, received string, rest []byte, err error) {
	line, rest, ok := bytes.Cut(stored, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte("Return-Path: ")) {
		return "", "", nil, errors.New("stored message does not start with a Return-Path field")
	}
	returnPath = string(line)
	line, rest, ok = bytes.Cut(rest, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte("Received: ")) {
		return "", "", nil, errors.New("stored message: no Received field after Return-Path")
	}
	fields := []string{string(line)}
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		fields = append(fields, string(line))
	}
	return returnPath, strings.Join(fields, "\n"), rest, nil
}

// checkDelivered waits for the single message of an interop test and
// checks what smtpdtest reports and what the Maildirs hold: one file in
// new/ of each recipient's mailbox, nothing in tmp/, and the file is the
// trace fields followed by the stored form of wire.
func checkDelivered(t *testing.T, ts *smtpdtest.Server, helo string, wire []byte, from string, to ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	msgs, err := ts.WaitMessages(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != from {
		t.Errorf("Message.From = %q, want %q", m.From, from)
	}
	if !slices.Equal(m.To, to) {
		t.Errorf("Message.To = %q, want %q", m.To, to)
	}
	if !bytes.Equal(m.Data, wire) {
		t.Errorf("Message.Data is not the wire form\n got: %q\nwant: %q", m.Data, wire)
	}
	if m.Helo != helo || !m.ESMTP {
		t.Errorf("Message.Helo, ESMTP = %q, %v; want %q, true", m.Helo, m.ESMTP, helo)
	}
	if m.Size != int64(len(wire)) {
		t.Errorf("Message.Size = %d, want %d", m.Size, len(wire))
	}
	if len(m.Paths) != len(to) {
		t.Errorf("Message.Paths = %q, want one per recipient (%d)", m.Paths, len(to))
	}
	want := storedForm(wire)
	for _, rcpt := range to {
		box := filepath.Join(ts.MaildirRoot, strings.ToLower(rcpt[:strings.IndexByte(rcpt, '@')]))
		if tmp := dirNames(t, filepath.Join(box, "tmp")); len(tmp) != 0 {
			t.Errorf("%s/tmp is not empty: %q", box, tmp)
		}
		names := dirNames(t, filepath.Join(box, "new"))
		if len(names) != 1 {
			t.Errorf("%s/new holds %q, want one message", box, names)
			continue
		}
		path := filepath.Join(box, "new", names[0])
		if !slices.Contains(m.Paths, path) {
			t.Errorf("stored file %s is not among Message.Paths %q", path, m.Paths)
		}
		stored, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		returnPath, received, rest := splitTraceFields(t, stored)
		if want := "Return-Path: <" + from + ">"; returnPath != want {
			t.Errorf("got %q, want %q", returnPath, want)
		}
		if want := "Received: from " + helo + " ([127.0.0.1])\n\tby smtpd.test (smtpd) with "; !strings.HasPrefix(received, want) {
			t.Errorf("Received field %q does not start with %q", received, want)
		}
		if want := " id " + m.ID; !strings.Contains(received, want) {
			t.Errorf("Received field %q lacks %q", received, want)
		}
		// RFC 5321 §7.2: the recipient is named only when it is the
		// only one.
		if forClause := "\tfor <" + rcpt + ">;"; strings.Contains(received, forClause) != (len(to) == 1) {
			t.Errorf("Received field %q: for clause present = %v, want %v", received, !(len(to) == 1), len(to) == 1)
		}
		if !bytes.Equal(rest, want) {
			t.Errorf("%s: stored message differs from what was sent (CRLF→LF)\n got: %q\nwant: %q", path, rest, want)
		}
	}
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// runPeer runs a client program, bounded in time, and fails the test with
// its output if it does not exit with status 0.
func runPeer(t *testing.T, stdin []byte, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "LC_ALL=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInteropSwaks(t *testing.T) {
	for _, pipeline := range []bool{false, true} {
		name := "plain"
		if pipeline {
			name = "pipeline"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			swaks := requirePeer(t, "swaks", "swaks")
			ts := smtpdtest.NewServer(t)
			msg := interopMessage("swaks-"+name, interopTo)
			// swaks takes a file ending in the end-of-data line as the
			// whole DATA section: it removes that line and sends its
			// own. Without it, swaks adds a CRLF of its own before the
			// final dot, that is an empty last line.
			file := writeTemp(t, "msg.eml", append(bytes.Clone(msg), ".\r\n"...))
			args := []string{
				"--server", ts.Addr,
				"--helo", "swaks.test",
				"--from", interopFrom,
				"--to", interopTo,
				"--data", "@" + file,
				"--timeout", "15",
			}
			if pipeline {
				args = append(args, "--pipeline")
			}
			runPeer(t, nil, swaks, args...)
			checkDelivered(t, ts, "swaks.test", msg, interopFrom, interopTo)
		})
	}
}

func TestInteropCurl(t *testing.T) {
	t.Parallel()
	curl := requirePeer(t, "curl", "curl")
	ts := smtpdtest.NewServer(t)
	msg := interopMessage("curl", interopTo)
	// curl uploads the file as it is, dot-stuffed; CRLF line endings make
	// it a well-formed message.
	file := writeTemp(t, "msg.eml", msg)
	runPeer(t, nil, curl, "-sS", "--max-time", "15",
		"--url", "smtp://"+ts.Addr+"/curl.test",
		"--mail-from", interopFrom,
		"--mail-rcpt", interopTo,
		"--upload-file", file)
	checkDelivered(t, ts, "curl.test", msg, interopFrom, interopTo)
}

func TestInteropMsmtp(t *testing.T) {
	t.Parallel()
	msmtp := requirePeer(t, "msmtp", "msmtp")
	ts := smtpdtest.NewServer(t)
	host, port, err := net.SplitHostPort(ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	msg := interopMessage("msmtp", interopTo)
	// An empty configuration file of our own keeps any user or system
	// one out of the test; msmtp wants it private.
	conf := writeTemp(t, "msmtprc", nil)
	runPeer(t, msg, msmtp, "--file="+conf,
		"--host="+host, "--port="+port,
		"--auth=off", "--tls=off",
		"--domain=msmtp.test",
		"--timeout=15",
		"--from="+interopFrom,
		"--", interopTo)
	checkDelivered(t, ts, "msmtp.test", msg, interopFrom, interopTo)
}

func TestInteropNetSMTPSendMail(t *testing.T) {
	t.Parallel()
	ts := smtpdtest.NewServer(t)
	msg := interopMessage("net-smtp-SendMail", interopTo)
	if err := smtp.SendMail(ts.Addr, nil, interopFrom, []string{interopTo}, msg); err != nil {
		t.Fatal(err)
	}
	// SendMail greets with EHLO localhost.
	checkDelivered(t, ts, "localhost", msg, interopFrom, interopTo)
}

func TestInteropNetSMTPClient(t *testing.T) {
	t.Parallel()
	ts := smtpdtest.NewServer(t)
	msg := interopMessage("net-smtp-Client", interopTo, interopCc)
	c, err := smtp.Dial(ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("net-smtp.test"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("EHLO does not advertise %s", ext)
		}
	}
	if err := c.Mail(interopFrom); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{interopTo, interopCc} {
		if err := c.Rcpt(rcpt); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil { // reads the reply to the data
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, ts, "net-smtp.test", msg, interopFrom, interopTo, interopCc)
}
