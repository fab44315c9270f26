// Package client is a small SMTP client for scripted dialogues: it sends
// command lines (one at a time, or several in one write as a PIPELINING
// batch), reads and checks replies, and can record a transcript of
// everything said, in the C:/S: notation of RFC 5321's examples.
//
// It is made for tests and demonstrations, so it shows what happened rather
// than hiding it: every reply is returned whole, nothing is retried, and raw
// bytes (bare LFs, smuggling attempts) can be sent on purpose with SendRaw.
// For sending mail from a program, use net/smtp.
package client

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds each dial, write and reply read of a Client.
const DefaultTimeout = 30 * time.Second

// maxReplyLine bounds one reply line; RFC 5321 §4.5.3.1.5 allows 512 octets.
const maxReplyLine = 4096

// maxReplyLines bounds the lines of one reply, so that a server that never
// ends a multi-line reply cannot make the client's memory grow without
// end. An EHLO reply has a few dozen.
const maxReplyLines = 1000

// Reply is one SMTP reply, possibly of several lines (RFC 5321 §4.2).
type Reply struct {
	Code int
	// Enhanced is the RFC 3463 enhanced status code of the first line,
	// such as "2.1.0", or "" when the reply has none.
	Enhanced string
	// Lines holds each line's text after the code, the separator and the
	// enhanced code.
	Lines []string
	raw   []string // the lines as received, without CRLF
}

// String returns the reply as it was received, lines joined by "\n".
func (r *Reply) String() string { return strings.Join(r.raw, "\n") }

// Error makes a Reply usable as the error of a command that did not get the
// reply it wanted.
func (r *Reply) Error() string { return "smtp: " + strings.Join(r.raw, " / ") }

// Class returns the reply's first digit: 2 (success), 3 (more input
// needed), 4 (transient failure) or 5 (permanent failure).
func (r *Reply) Class() int { return r.Code / 100 }

// Client is one SMTP connection.
type Client struct {
	conn net.Conn
	br   *bufio.Reader
	// Transcript, if set, receives every line sent ("C: ...") and received
	// ("S: ..."). Raw bytes are shown Go-quoted, after "R: ". Credentials
	// are not: the initial response of an AUTH command and every line
	// sent while the server asks for more (334) show as <redacted>.
	Transcript io.Writer
	// Timeout bounds each write and each reply read; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// TLSConfig is used by StartTLS and by a dialogue's TLS step.
	TLSConfig *tls.Config

	inAuth bool // an AUTH exchange may be under way: redact what is sent
}

// Dial connects to an SMTP server. It does not read the greeting: call
// ReadReply for it.
func Dial(addr string) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// DialTLS connects to an SMTP server with implicit TLS (RFC 8314) and
// completes the handshake. It does not read the greeting.
func DialTLS(addr string, config *tls.Config) (*Client, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: DefaultTimeout}, Config: config}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := NewClient(conn)
	c.TLSConfig = config
	return c, nil
}

// StartTLS sends STARTTLS (RFC 3207), checks for the 220 reply and starts
// TLS with c.TLSConfig. Anything the server sent after its 220 in plain
// text is dropped, as RFC 3207 §5 wants. The client must send EHLO again.
func (c *Client) StartTLS() error {
	r, err := c.Cmd("STARTTLS")
	if err != nil {
		return err
	}
	if r.Code != 220 {
		return r
	}
	return c.Handshake()
}

// Handshake starts TLS as the client on the connection as it is now, with
// c.TLSConfig; a dialogue's TLS step calls it after STARTTLS and its 220.
func (c *Client) Handshake() error {
	if c.TLSConfig == nil {
		return errors.New("smtp: no TLSConfig for the TLS handshake")
	}
	tc := tls.Client(c.conn, c.TLSConfig)
	tc.SetDeadline(c.deadline())
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("smtp: TLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn = tc
	c.br = bufio.NewReader(tc)
	st := tc.ConnectionState()
	c.record("-- TLS started: " + tls.VersionName(st.Version))
	return nil
}

// NewClient returns a Client speaking over conn.
func NewClient(conn net.Conn) *Client {
	return &Client{conn: conn, br: bufio.NewReader(conn)}
}

// Close closes the connection without QUIT.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the underlying connection.
func (c *Client) Conn() net.Conn { return c.conn }

func (c *Client) deadline() time.Time {
	if c.Timeout > 0 {
		return time.Now().Add(c.Timeout)
	}
	return time.Now().Add(DefaultTimeout)
}

// Send writes lines, each followed by CRLF, in a single write: several lines
// make a PIPELINING batch (RFC 2920). A line holding CR or LF is refused, so
// a caller cannot inject a command by accident.
func (c *Client) Send(lines ...string) error {
	var b []byte
	for _, line := range lines {
		if strings.ContainsAny(line, "\r\n") {
			return fmt.Errorf("smtp: line %q holds CR or LF; use SendRaw", line)
		}
		b = append(b, line...)
		b = append(b, '\r', '\n')
	}
	for _, line := range lines {
		c.record("C: " + line)
	}
	return c.write(b)
}

// SendRaw writes b exactly as given.
func (c *Client) SendRaw(b []byte) error {
	c.recordRaw(b)
	return c.write(b)
}

func (c *Client) write(b []byte) error {
	c.conn.SetWriteDeadline(c.deadline())
	_, err := c.conn.Write(b)
	return err
}

// record writes a transcript line, redacting credentials (see Transcript).
func (c *Client) record(line string) {
	switch {
	case strings.HasPrefix(line, "C: "):
		line = "C: " + c.redact(line[3:])
	case strings.HasPrefix(line, "S: "):
		// Only a 334 continues an AUTH exchange (RFC 4954 §4).
		if c.inAuth && !strings.HasPrefix(line, "S: 334") {
			c.inAuth = false
		}
	}
	if c.Transcript != nil {
		io.WriteString(c.Transcript, line+"\n")
	}
}

// recordRaw writes raw bytes to the transcript, Go-quoted, each line of
// them redacted as record does.
func (c *Client) recordRaw(b []byte) {
	lines := strings.SplitAfter(string(b), "\n")
	for i, line := range lines {
		if line == "" {
			continue // after the final LF
		}
		text := strings.TrimRight(line, "\r\n")
		if text != "" || c.inAuth {
			lines[i] = c.redact(text) + line[len(text):]
		}
	}
	c.record("R: " + strconv.Quote(strings.Join(lines, "")))
}

// redact returns a line to send as the transcript shows it, and notes the
// start of an AUTH exchange.
func (c *Client) redact(line string) string {
	if c.inAuth {
		return "<redacted>"
	}
	verb, rest, _ := strings.Cut(line, " ")
	if !strings.EqualFold(verb, "AUTH") {
		return line
	}
	c.inAuth = true
	mech, ir, ok := strings.Cut(strings.TrimLeft(rest, " "), " ")
	if !ok || ir == "" {
		return line
	}
	return verb + " " + mech + " <redacted>"
}

// ErrMalformedReply is returned for input that is not an SMTP reply.
var ErrMalformedReply = errors.New("smtp: malformed reply")

// ReadReply reads one reply, all its lines.
func (c *Client) ReadReply() (*Reply, error) {
	c.conn.SetReadDeadline(c.deadline())
	r := &Reply{}
	for {
		line, err := c.readLine()
		if err != nil {
			if len(r.raw) > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		c.record("S: " + line)
		code, text, last, ok := splitReplyLine(line)
		if !ok || len(r.raw) > 0 && code != r.Code {
			return nil, fmt.Errorf("%w: %q", ErrMalformedReply, line)
		}
		if len(r.raw) == 0 {
			r.Code = code
			r.Enhanced, _ = splitEnhanced(code, text)
		}
		if r.Enhanced != "" {
			_, text = splitEnhanced(code, text)
		}
		r.raw = append(r.raw, line)
		r.Lines = append(r.Lines, text)
		if last {
			return r, nil
		}
		if len(r.raw) == maxReplyLines {
			return nil, fmt.Errorf("%w: more than %d lines", ErrMalformedReply, maxReplyLines)
		}
	}
}

func (c *Client) readLine() (string, error) {
	var line []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxReplyLine {
			return "", fmt.Errorf("%w: line over %d octets", ErrMalformedReply, maxReplyLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(line) > 0 {
			return "", fmt.Errorf("%w: reply line %q cut off", io.ErrUnexpectedEOF, line)
		}
		if err != nil {
			return "", err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		return string(line), nil
	}
}

// splitReplyLine splits "250-text" or "250 text" (or a bare "250").
func splitReplyLine(line string) (code int, text string, last, ok bool) {
	if len(line) < 3 {
		return 0, "", false, false
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil || code < 200 || code > 599 {
		return 0, "", false, false
	}
	switch {
	case len(line) == 3:
		return code, "", true, true
	case line[3] == ' ':
		return code, line[4:], true, true
	case line[3] == '-':
		return code, line[4:], false, true
	}
	return 0, "", false, false
}

// splitEnhanced splits an RFC 3463 status code (class.subject.detail, class
// matching the reply's) off the front of text.
func splitEnhanced(code int, text string) (enhanced, rest string) {
	word, rest, _ := strings.Cut(text, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return "", text
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 || p[0] == '+' {
			return "", text
		}
	}
	return word, rest
}

// Cmd sends one command line and reads its reply.
func (c *Client) Cmd(line string) (*Reply, error) {
	if err := c.Send(line); err != nil {
		return nil, err
	}
	return c.ReadReply()
}

// expect sends line and checks that the reply is of the given class; a reply
// of another class is returned as the error.
func (c *Client) expect(class int, line string) (*Reply, error) {
	r, err := c.Cmd(line)
	if err != nil {
		return nil, err
	}
	if r.Class() != class {
		return r, r
	}
	return r, nil
}

// Greeting reads the server's greeting and checks that it is 220.
func (c *Client) Greeting() (*Reply, error) {
	r, err := c.ReadReply()
	if err == nil && r.Code != 220 {
		err = r
	}
	return r, err
}

// Hello sends EHLO.
func (c *Client) Hello(name string) (*Reply, error) { return c.expect(2, "EHLO "+name) }

// Mail sends MAIL FROM:<from> with optional parameters ("SIZE=100").
func (c *Client) Mail(from string, params ...string) (*Reply, error) {
	return c.expect(2, strings.Join(append([]string{"MAIL FROM:<" + from + ">"}, params...), " "))
}

// Rcpt sends RCPT TO:<to>.
func (c *Client) Rcpt(to string) (*Reply, error) { return c.expect(2, "RCPT TO:<"+to+">") }

// Data sends DATA and then msg, whose lines may end in LF or CRLF: it is sent
// with CRLF line endings and dot-stuffed (RFC 5321 §4.5.2), followed by the
// end-of-data line. It returns the reply to the data.
func (c *Client) Data(msg []byte) (*Reply, error) {
	if _, err := c.expect(3, "DATA"); err != nil {
		return nil, err
	}
	if err := c.write(DotStuff(msg)); err != nil {
		return nil, err
	}
	c.record(fmt.Sprintf("C: <message data: %d octets>", len(msg)))
	c.record("C: .")
	r, err := c.ReadReply()
	if err == nil && r.Class() != 2 {
		err = r
	}
	return r, err
}

// Quit sends QUIT, reads the reply and closes the connection.
func (c *Client) Quit() error {
	_, err := c.expect(2, "QUIT")
	c.conn.Close()
	return err
}

// DotStuff returns msg as DATA sends it: every line ending CRLF, every line
// that starts with '.' given another, and the end-of-data line appended.
func DotStuff(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+len(msg)/32+5)
	for len(msg) > 0 {
		line, rest, found := bytes.Cut(msg, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > 0 && line[0] == '.' {
			out = append(out, '.')
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
		if !found {
			break
		}
		msg = rest
	}
	return append(out, '.', '\r', '\n')
}
