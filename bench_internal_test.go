package smtpd

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"
)

// Benchmarks of the server's parts, below the network: the command parser,
// the DATA reader and the Maildir store. bench_test.go has the end-to-end
// ones (BenchmarkTransaction, BenchmarkConcurrent16).

// benchCommands is what a typical client sends in one transaction, as
// written by common MTAs and libraries (upper-case verbs, ESMTP params).
var benchCommands = []struct{ name, line string }{
	{"EHLO", "EHLO client.example.net"},
	{"MAIL", "MAIL FROM:<sender.name@example.net> SIZE=2048 BODY=8BITMIME"},
	{"RCPT", "RCPT TO:<user.name@example.org>"},
	{"DATA", "DATA"},
	{"RSET", "RSET"},
	{"NOOP", "NOOP"},
	{"QUIT", "QUIT"},
}

// Results of the parsing benchmarks, kept so that the compiler cannot drop
// the work.
var (
	sinkVerb, sinkArg string
	sinkAddr          address
	sinkParams        mailParams
	sinkErr           error
)

// parseBenchLine parses a command line as the session's handlers do: the
// verb and argument, then the argument of the verbs that have one.
func parseBenchLine(line string) {
	verb, arg := parseCommand(line)
	switch verb {
	case "HELO", "EHLO":
		sinkArg, sinkErr = parseHelo(arg)
	case "MAIL":
		sinkAddr, _, sinkParams, sinkErr = parseMail(arg, true, false)
	case "RCPT":
		sinkAddr, _, sinkErr = parseRcpt(arg, true, false)
	}
	sinkVerb = verb
}

// BenchmarkParseCommand measures the command parser (parser.go): one op of
// "mix" is the whole transaction of benchCommands; the sub-benchmarks named
// after a verb parse that line alone.
func BenchmarkParseCommand(b *testing.B) {
	for _, c := range benchCommands {
		if parseBenchLine(c.line); sinkErr != nil {
			b.Fatalf("%q: %v", c.line, sinkErr)
		}
	}
	b.Run("mix", func(b *testing.B) {
		n := 0
		for _, c := range benchCommands {
			n += len(c.line)
		}
		b.SetBytes(int64(n))
		b.ReportAllocs()
		for b.Loop() {
			for _, c := range benchCommands {
				parseBenchLine(c.line)
			}
		}
	})
	for _, c := range benchCommands {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.line)))
			b.ReportAllocs()
			for b.Loop() {
				parseBenchLine(c.line)
			}
		})
	}
}

// benchData returns the DATA stream of a message of about size octets, in
// its wire form with CRLF line endings, as mail usually is: up to 2 KiB, a
// text message (lines of varied length, sentences ending in dots, every 20th
// line starting with a dot, so dot-stuffed); beyond, a short text part and a
// base64 attachment for the rest, as large messages are. It ends with the
// end-of-data line.
func benchData(size int) []byte {
	const textSize = 2 << 10
	var b bytes.Buffer
	b.WriteString("Received: from client.example.net (client.example.net [192.0.2.1])\r\n" +
		"\tby mx.example.org with ESMTP id 4f2a9c; Fri, 27 Nov 2026 14:25:11 +0000\r\n" +
		"From: Sender Name <sender.name@example.net>\r\nTo: <user.name@example.org>\r\n" +
		"Subject: benchmark message\r\nDate: Fri, 27 Nov 2026 14:25:11 +0000\r\n" +
		"Message-ID: <bench.1@example.net>\r\nMIME-Version: 1.0\r\n")
	if size <= textSize {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		writeBenchText(&b, size-5)
		b.WriteString(".\r\n")
		return b.Bytes()
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=b1\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	writeBenchText(&b, textSize)
	b.WriteString("--b1\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	raw := make([]byte, 57) // 76 base64 characters a line, as MIME writes them
	for i := 0; b.Len() < size-80; i++ {
		for j := range raw {
			raw[j] = byte(i*31 + j*7)
		}
		b.WriteString(base64.StdEncoding.EncodeToString(raw) + "\r\n")
	}
	b.WriteString("--b1--\r\n.\r\n")
	return b.Bytes()
}

// writeBenchText writes lines of text to b until it holds about size octets.
func writeBenchText(b *bytes.Buffer, size int) {
	words := strings.Fields("The quick brown fox jumps over the lazy dog. Meanwhile " +
		"an SMTP server reads message data, e.g. this text, in large chunks.")
	for i := 0; b.Len() < size; i++ {
		var line strings.Builder
		if i%20 == 0 {
			line.WriteString("..") // a line starting with "." on the wire
		}
		for j := i; line.Len() < 30+i%48; j++ {
			line.WriteString(words[j%len(words)])
			line.WriteByte(' ')
		}
		b.WriteString(strings.TrimSuffix(line.String(), " ") + "\r\n")
	}
}

// BenchmarkReadData measures the DATA reader (data.go) on a message read
// through a bufio.Reader of the session's size, written to io.Discard.
func BenchmarkReadData(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"2KiB", 2 << 10}, {"1MiB", 1 << 20}} {
		b.Run(size.name, func(b *testing.B) {
			data := benchData(size.n)
			r := bytes.NewReader(data)
			br := bufio.NewReaderSize(r, readBufferSize)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(data)
				br.Reset(r)
				if _, err := readData(br, io.Discard, int64(len(data))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDelivery measures a durable delivery of a 2 KiB message into the
// Maildir store (create, Write, commit: fsyncs included) for one recipient
// and for ten distinct mailboxes.
func BenchmarkDelivery(b *testing.B) {
	msg := benchData(2 << 10)
	msg = msg[:len(msg)-3] // the stored form has no end-of-data line
	for _, rcpts := range []int{1, 10} {
		b.Run(fmt.Sprintf("%drcpt", rcpts), func(b *testing.B) {
			md, err := newMaildir(b.TempDir(), "bench.test")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { md.close() })
			boxes := make([]string, rcpts)
			for i := range boxes {
				boxes[i] = fmt.Sprintf("user%02d", i)
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				d, err := md.create(boxes)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := d.commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
