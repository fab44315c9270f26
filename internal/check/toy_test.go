package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// A toy is a small SMTP server written to the RFCs, as a student would
// write one, to check the checker: flawless it passes every case it does
// not skip, and each flaw spoils one thing. It advertises PIPELINING and
// SIZE, nothing else, and stores messages in a Maildir.
type toy struct {
	l       net.Listener
	flaw    flaw
	maildir string
	seq     atomic.Int64 // for unique file names
	wg      sync.WaitGroup
}

type flaw int

const (
	flawless         flaw = iota
	flawLFDotLF           // a data line ends at a bare LF too, so <LF>.<LF> ends the data
	flawDropsBatch        // forgets what was read past each command: a pipelined batch is lost
	flawAcceptsAll        // answers 250 to unknown commands
	flawNoSequence        // takes commands out of sequence instead of answering 503
	flawClosesInData      // hangs up once message data passes 32 KiB (a fixed buffer)
	flawNoUnstuffing      // stores dot-stuffed lines with their extra dot
)

const (
	toyMaxSize   = 100000 // advertised with SIZE
	toyMaxLine   = 512    // command line limit, CRLF included
	toyDataLimit = 32 * 1024
)

// startToy starts a toy with flaw on 127.0.0.1; the test's end stops it.
func startToy(t *testing.T, f flaw) *toy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ty := &toy{l: l, flaw: f, maildir: t.TempDir()}
	ty.wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			ty.wg.Go(func() {
				defer conn.Close()
				ty.serve(conn)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		ty.wg.Wait()
	})
	return ty
}

func (ty *toy) addr() string { return ty.l.Addr().String() }

// session is one connection's state.
type session struct {
	ty    *toy
	conn  net.Conn
	br    *bufio.Reader
	helo  bool
	from  string
	mail  bool
	rcpts []string
}

func (ty *toy) serve(conn net.Conn) {
	s := &session{ty: ty, conn: conn, br: bufio.NewReader(conn)}
	s.reply("220 toy.test ESMTP")
	for {
		line, tooLong, err := s.readLine()
		if err != nil {
			return
		}
		var quit bool
		if tooLong {
			s.reply("500 line too long")
		} else {
			quit = s.command(line)
		}
		if ty.flaw == flawDropsBatch {
			s.br.Reset(conn)
		}
		if quit {
			return
		}
	}
}

func (s *session) reply(lines ...string) {
	s.conn.Write([]byte(strings.Join(lines, "\r\n") + "\r\n"))
}

// readLine reads a command line, up to LF; a line over toyMaxLine is read
// to its end and reported too long.
func (s *session) readLine() (line string, tooLong bool, err error) {
	var buf []byte
	for {
		frag, err := s.br.ReadSlice('\n')
		if len(buf)+len(frag) <= toyMaxLine {
			buf = append(buf, frag...)
		} else {
			tooLong = true
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return "", false, err
		}
		return strings.TrimRight(string(buf), "\r\n"), tooLong, nil
	}
}

var (
	mailArg = regexp.MustCompile(`(?i)^FROM:<([^>]*)>((?: [A-Za-z0-9=]+)*)$`)
	rcptArg = regexp.MustCompile(`(?i)^TO:<([^>]*)>$`)
)

// command runs one command; it reports whether the session is over.
func (s *session) command(line string) (quit bool) {
	verb, arg, _ := strings.Cut(line, " ")
	checks := s.ty.flaw != flawNoSequence
	switch strings.ToUpper(verb) {
	case "HELO", "EHLO":
		if arg == "" {
			s.reply("501 Syntax: " + strings.ToUpper(verb) + " hostname")
			return false
		}
		s.helo, s.mail, s.rcpts = true, false, nil
		if strings.EqualFold(verb, "EHLO") {
			s.reply("250-toy.test", "250-PIPELINING", "250 SIZE "+strconv.Itoa(toyMaxSize))
		} else {
			s.reply("250 toy.test")
		}
	case "MAIL":
		m := mailArg.FindStringSubmatch(arg)
		switch {
		case checks && (!s.helo || s.mail):
			s.reply("503 bad sequence of commands")
		case m == nil:
			s.reply("501 Syntax: MAIL FROM:<address>")
		case declaredSize(m[2]) > toyMaxSize:
			s.reply("552 message size exceeds fixed maximum message size")
		default:
			s.from, s.mail, s.rcpts = m[1], true, nil
			s.reply("250 Ok")
		}
	case "RCPT":
		m := rcptArg.FindStringSubmatch(arg)
		switch {
		case checks && !s.mail:
			s.reply("503 bad sequence of commands")
		case m == nil || m[1] == "":
			s.reply("501 Syntax: RCPT TO:<address>")
		default:
			s.rcpts = append(s.rcpts, m[1])
			s.reply("250 Ok")
		}
	case "DATA":
		if checks && len(s.rcpts) == 0 {
			s.reply("503 bad sequence of commands")
			return false
		}
		s.reply("354 End data with <CR><LF>.<CR><LF>")
		return s.data()
	case "RSET":
		s.mail, s.rcpts = false, nil
		s.reply("250 Ok")
	case "NOOP":
		s.reply("250 Ok")
	case "VRFY":
		s.reply("252 Cannot VRFY user")
	case "QUIT":
		s.reply("221 Bye")
		return true
	default:
		if s.ty.flaw == flawAcceptsAll {
			s.reply("250 Ok")
		} else {
			s.reply("500 command not recognized")
		}
	}
	return false
}

// declaredSize returns the SIZE= parameter among MAIL's parameters, or 0.
func declaredSize(params string) int {
	for _, p := range strings.Fields(params) {
		if v, ok := strings.CutPrefix(strings.ToUpper(p), "SIZE="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return toyMaxSize + 1
			}
			return n
		}
	}
	return 0
}

// data reads the message up to the line holding a lone dot, undoes the
// dot-stuffing and stores it; it reports whether the session is over.
func (s *session) data() (quit bool) {
	var msg bytes.Buffer
	var line []byte
	size := 0
	for {
		frag, err := s.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			line = append(line, frag...)
			continue
		}
		if err != nil {
			return true // the client is gone: nothing is stored
		}
		line = append(line, frag...)
		ends := bytes.HasSuffix(line, []byte("\r\n")) || s.ty.flaw == flawLFDotLF
		if !ends {
			continue // a bare LF inside a line
		}
		text := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		line = nil
		if string(text) == "." {
			break
		}
		if len(text) > 0 && text[0] == '.' && s.ty.flaw != flawNoUnstuffing {
			text = text[1:]
		}
		size += len(text) + 2
		if s.ty.flaw == flawClosesInData && size > toyDataLimit {
			return true
		}
		if size <= toyMaxSize {
			msg.Write(text)
			msg.WriteString("\n")
		}
	}
	defer func() { s.mail, s.rcpts = false, nil }()
	if size > toyMaxSize {
		s.reply("552 message size exceeds fixed maximum message size")
		return false
	}
	if err := s.store(msg.Bytes()); err != nil {
		s.reply("451 local error")
		return false
	}
	s.reply("250 Ok: queued")
	return false
}

// store writes the message into each recipient's Maildir: tmp/, then new/.
func (s *session) store(msg []byte) error {
	for _, rcpt := range s.rcpts {
		local, _, _ := strings.Cut(rcpt, "@")
		box := strings.ToLower(local)
		if strings.Trim(box, "abcdefghijklmnopqrstuvwxyz0123456789._-") != "" || strings.HasPrefix(box, ".") {
			box = "other"
		}
		dir := filepath.Join(s.ty.maildir, box)
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				return err
			}
		}
		name := fmt.Sprintf("%d.toy", s.ty.seq.Add(1))
		tmp := filepath.Join(dir, "tmp", name)
		if err := os.WriteFile(tmp, msg, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, "new", name)); err != nil {
			return errors.Join(err, os.Remove(tmp))
		}
	}
	return nil
}
