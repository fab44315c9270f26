package smtpd

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/mail"
	"net/netip"
	"strings"
	"time"
)

// Message is a message the server has accepted and stored.
type Message struct {
	// ID is the queue id of the "250 2.0.0 Ok: queued as ID" reply, also
	// found in the Received header, the Message-ID the server adds when the
	// message has none, and the access log.
	ID string
	// From is the reverse path without angle brackets; "" for the null
	// sender <>.
	From string
	// To holds the forward paths without angle brackets, in RCPT order.
	To []string
	// Helo is the argument of the client's HELO or EHLO.
	Helo string
	// ESMTP reports whether the client greeted with EHLO (or LHLO).
	ESMTP bool
	// LMTP reports whether the message came over LMTP (Config.LMTP).
	LMTP bool
	// RemoteAddr is the client's address: behind a trusted proxy
	// (Config.ProxyFrom), the one its PROXY header gave.
	RemoteAddr net.Addr
	// BodyType is the BODY parameter of MAIL FROM: "7BIT", "8BITMIME"
	// (RFC 6152), "BINARYMIME" (RFC 3030, sent with BDAT) or "".
	BodyType string
	// SMTPUTF8 reports whether MAIL FROM carried the SMTPUTF8 parameter.
	SMTPUTF8 bool
	// DSN holds the delivery status notification parameters the client
	// gave (RFC 3461). They are recorded only: the server sends no
	// notifications.
	DSN DSN
	// TLS describes the TLS connection the message came over (STARTTLS
	// or implicit TLS); nil when it came in plain text.
	TLS *tls.ConnectionState
	// AuthUser is the user the client authenticated as with AUTH; "" when
	// it did not.
	AuthUser string
	// AuthzID is the authorization identity the client gave with AUTH
	// PLAIN, the user it asked to act for (RFC 4616 §2); "" when it gave
	// none. Only in Config.TestMode may it differ from AuthUser.
	AuthzID string
	// AuthPassword is the password the client gave with AUTH, recorded
	// in Config.TestMode only, for tests of clients that authenticate.
	AuthPassword string
	// Size is the size of the message data in octets, in its wire form.
	Size int64
	// Time is when the message's data began to arrive: the date of its
	// Received header field. (access.log gives the time of the 250.)
	Time time.Time
	// Paths are the files the message was stored as, one per recipient
	// mailbox (RFC 5321 recipients that map to the same mailbox share one).
	Paths []string
	// Data is the message as the client sent it: the wire form, with CRLF
	// line endings and dot-stuffing undone, without the headers the server
	// adds. It is only kept for Config.Delivered; elsewhere it is nil.
	Data []byte

	log    *SessionLog // of the session that sent the message; nil if none was kept
	logEnd int         // the length of the log when the message was stored
}

// Transcript returns the dialogue of the session that sent the message:
// every line both ways and the session's events (TLS, AUTH, fault rules),
// with their times, from the session's start up to the client's next MAIL
// command or the session's end. Secrets are redacted as in the trace, and
// the message data is one line of its size (Data has it).
//
// The transcript grows as the session goes on: when Config.Delivered is
// called it ends with the message data ("C: ."), and the server's reply
// ("S: 250 2.0.0 Ok: queued as …"), QUIT and 221 are added once they
// happen. Each call returns the lines so far; it is safe at any time, from
// any goroutine. The server keeps a transcript only when Config.Delivered,
// Config.SessionStarted or Config.SessionEnded is set; otherwise it is nil.
func (m *Message) Transcript() []TranscriptLine {
	if m.log == nil {
		return nil
	}
	return m.log.transcript(m.logEnd)
}

// TranscriptLine is one line of a session's dialogue.
type TranscriptLine struct {
	Time time.Time
	Kind LineKind
	Text string
}

// String returns the line as the trace shows it: "C: EHLO x", "S: 250 Ok",
// "* connected from …".
func (l TranscriptLine) String() string {
	if l.Kind == KindEvent {
		return "* " + l.Text
	}
	return l.Kind.String() + ": " + l.Text
}

// LineKind says where a TranscriptLine comes from. Its values are the
// marks the trace and the transcript use.
type LineKind byte

const (
	KindClient LineKind = 'C' // a line the client sent
	KindServer LineKind = 'S' // a reply line the server sent
	KindEvent  LineKind = '*' // an event: connection, TLS, AUTH, a fault rule
)

// String returns the kind's mark: "C", "S" or "*".
func (k LineKind) String() string { return string(rune(k)) }

// receivedProtocol is the "with" clause of the Received header: RFC 5321
// §4.4, with the LMTP forms and the S (TLS) and A (AUTH) suffixes of RFC
// 3848 and, for SMTPUTF8, the UTF8SMTP and UTF8LMTP forms of RFC 6531
// §3.7.3. The suffixes exist only for the extended forms: a HELO client
// over implicit TLS is just "SMTP".
func (m *Message) receivedProtocol() string {
	var p string
	switch {
	case m.LMTP && m.SMTPUTF8:
		p = "UTF8LMTP"
	case m.LMTP:
		p = "LMTP"
	case m.SMTPUTF8:
		p = "UTF8SMTP"
	case m.ESMTP:
		p = "ESMTP"
	default:
		return "SMTP"
	}
	if m.TLS != nil {
		p += "S"
	}
	if m.AuthUser != "" {
		p += "A"
	}
	return p
}

// traceHeaders returns the Return-Path and Received header fields that start
// every stored message (RFC 5321 §4.4), with LF line endings. The fields are
// appended piece by piece into one buffer, sized for the common case, rather
// than built from concatenated strings: once per message, each concatenation
// was an allocation.
func (m *Message) traceHeaders(hostname string) []byte {
	b := make([]byte, 0, 256)
	b = appendStrings(b, "Return-Path: <", m.From, ">\n")
	b = appendStrings(b, "Received: from ", m.Helo, " (", addressLiteral(m.RemoteAddr), ")\n")
	if m.AuthUser != "" {
		b = appendStrings(b, "\t(authenticated as ", headerComment(m.AuthUser), ")\n")
	}
	b = appendStrings(b, "\tby ", hostname, " (smtpd) with ", m.receivedProtocol(), " id ", m.ID)
	if m.TLS != nil {
		b = appendStrings(b, "\n\t(using ", tls.VersionName(m.TLS.Version), " with cipher ", tls.CipherSuiteName(m.TLS.CipherSuite), ")")
	}
	// Naming the recipient only when there is one keeps the other
	// recipients of a message private (RFC 5321 §7.2).
	if len(m.To) == 1 {
		b = appendStrings(b, "\n\tfor <", m.To[0], ">")
	}
	b = append(b, ";\n\t"...)
	b = m.Time.AppendFormat(b, time.RFC1123Z)
	return append(b, '\n')
}

// appendStrings appends each of parts to b.
func appendStrings(b []byte, parts ...string) []byte {
	for _, s := range parts {
		b = append(b, s...)
	}
	return b
}

// missingHeaders returns the header fields the message lacks among From, To,
// Date and Message-ID, filled in from the envelope (LF line endings). To is
// only added when the message has no To, Cc or Bcc either: a message whose
// recipients are all in Cc must not have its envelope recipients revealed.
func (m *Message) missingHeaders(seen headerSet, hostname string) []byte {
	var b bytes.Buffer
	if !seen.has(headerFrom) {
		from := m.From
		if from == "" {
			from = "MAILER-DAEMON@" + hostname
		}
		b.WriteString("From: <" + from + ">\n")
	}
	if !seen.has(headerTo) && !seen.has(headerCc) && !seen.has(headerBcc) {
		b.WriteString("To: ")
		for i, to := range m.To {
			if i > 0 {
				b.WriteString(",\n\t")
			}
			b.WriteString("<" + to + ">")
		}
		b.WriteString("\n")
	}
	if !seen.has(headerDate) {
		b.WriteString("Date: " + m.Time.Format(time.RFC1123Z) + "\n")
	}
	if !seen.has(headerMessageID) {
		b.WriteString("Message-ID: <" + m.ID + "@" + hostname + ">\n")
	}
	return b.Bytes()
}

// headerComment makes s safe inside a header comment (RFC 5322 §3.2.2): a
// backslash before '(', ')' and '\\', and '?' for control characters, so
// that no user name can end the comment or the field.
func headerComment(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '(' || r == ')' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// addressLiteral formats the client's IP address as RFC 5321 §4.1.3 writes
// it in the Received header: [192.0.2.1] or [IPv6:2001:db8::1].
func addressLiteral(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return "unknown"
	}
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		return "[" + ip.String() + "]"
	}
	return "[IPv6:" + ip.WithZone("").String() + "]"
}

// headerSet records which of the header fields the server may add were
// found in a message.
type headerSet uint8

const (
	headerFrom headerSet = 1 << iota
	headerTo
	headerCc
	headerBcc
	headerDate
	headerMessageID
)

func (s headerSet) has(h headerSet) bool { return s&h != 0 }

// allHeaders is what a header section longer than maxHeaderScan is taken to
// have: the fields past the limit are not known, and adding one the message
// has would duplicate it, or, for To, reveal Bcc recipients.
const allHeaders = headerFrom | headerTo | headerCc | headerBcc | headerDate | headerMessageID

// watchedHeaders maps lower-cased field names to their bit.
var watchedHeaders = map[string]headerSet{
	"from":       headerFrom,
	"to":         headerTo,
	"cc":         headerCc,
	"bcc":        headerBcc,
	"date":       headerDate,
	"message-id": headerMessageID,
}

// maxHeaderScan bounds how much of a message is held in memory while its
// header section is examined for missing fields. A longer header section
// gets none added (see allHeaders).
const maxHeaderScan = 64 << 10

// headerBufferSize is the first capacity of headerWriter's buffer: the
// header section of a message written by an application (this server's
// usual client) fits; one relayed through several MTAs grows it once or
// twice.
const headerBufferSize = 1 << 10

// headerWriter writes a message in its stored form: the server's headers
// first, then the message's own bytes unchanged. Which headers to add is only
// known once the header section has been read, so the header section is held
// back (up to maxHeaderScan octets) until its end is seen. It is written to
// with LF line endings.
type headerWriter struct {
	w io.Writer
	// prefix returns the header fields to write first, given the fields
	// found in the message.
	prefix func(seen headerSet) []byte
	buf    []byte    // held-back start of the message, until done
	next   int       // offset in buf of the first line not yet examined
	seen   headerSet // fields found so far
	// bodyOnly is set when the message does not start with a header
	// field (a hand-typed "hello"); a blank line must then follow the
	// server's headers, so that the message becomes the body.
	bodyOnly bool
	done     bool // the prefix and buf have been written
}

func (h *headerWriter) Write(p []byte) (int, error) {
	if h.done {
		return h.w.Write(p)
	}
	if h.buf == nil {
		// Room for a usual header section at once, rather than an
		// allocation per doubling as it grows line by line.
		h.buf = make([]byte, 0, headerBufferSize)
	}
	h.buf = append(h.buf, p...)
	for !h.done {
		nl := bytes.IndexByte(h.buf[h.next:], '\n')
		if nl < 0 {
			if len(h.buf) > maxHeaderScan {
				h.seen = allHeaders
				return len(p), h.flush()
			}
			return len(p), nil
		}
		h.examine(h.buf[h.next : h.next+nl])
		h.next += nl + 1
	}
	return len(p), h.flush()
}

// examine looks at one line of the header section; it sets done at the
// section's end.
func (h *headerWriter) examine(line []byte) {
	first := h.next == 0
	name, end := headerField(line, first)
	if end {
		// A message that does not start with a header field is all
		// body; the message's bytes are kept as they are.
		h.bodyOnly = first && len(line) > 0
		h.done = true
		return
	}
	h.seen |= watchedHeaders[strings.ToLower(string(name))]
}

// headerField examines a line of a message's header section, without its
// line ending; first says whether it is the message's first line. It
// returns the name of the field the line starts (nil for a continuation
// line), or end when the header section ends before this line: at the blank
// line that ends it, at a line that is not a header field (RFC 5322 §2.2),
// or at once when the message starts with a continuation line.
func headerField(line []byte, first bool) (name []byte, end bool) {
	if len(line) == 0 {
		return nil, true
	}
	if line[0] == ' ' || line[0] == '\t' {
		return nil, first
	}
	name, _, ok := bytes.Cut(line, []byte(":"))
	if !ok || !isFieldName(name) {
		return nil, true
	}
	return name, false
}

// flush writes the server's headers and the held-back bytes; from then on
// writes go straight through.
func (h *headerWriter) flush() error {
	h.done = true
	pre := h.prefix(h.seen)
	if h.bodyOnly {
		pre = append(pre, '\n')
	}
	if _, err := h.w.Write(pre); err != nil {
		return err
	}
	_, err := h.w.Write(h.buf)
	h.buf = nil
	return err
}

// Close examines a last line without a line ending, if the message ended
// inside its header section, and writes whatever is held back.
func (h *headerWriter) Close() error {
	if h.done {
		return nil
	}
	if h.next < len(h.buf) {
		h.examine(h.buf[h.next:])
	} else if h.next == 0 {
		h.bodyOnly = false // an empty message gets the headers only
	}
	return h.flush()
}

// isFieldName reports whether b is a field-name: 1*ftext, printable US-ASCII
// other than ':' (RFC 5322 §3.6.8).
func isFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// storedWriter turns a message's wire form, written to it, into its stored
// form, written to w: the server's header fields first, then the message
// with each CRLF turned into LF (see the README's Specification section).
type storedWriter struct {
	lf  lfWriter
	hdr headerWriter
}

// newStoredWriter returns a storedWriter; prefix gives the header fields to
// write first, knowing which the message has (see headerWriter).
func newStoredWriter(w io.Writer, prefix func(seen headerSet) []byte) *storedWriter {
	sw := &storedWriter{hdr: headerWriter{w: w, prefix: prefix}}
	sw.lf.w = &sw.hdr
	return sw
}

func (sw *storedWriter) Write(p []byte) (int, error) { return sw.lf.Write(p) }

// Close writes whatever is held back. It does not close w.
func (sw *storedWriter) Close() error {
	if err := sw.lf.Close(); err != nil {
		return err
	}
	return sw.hdr.Close()
}

// lfWriter turns each CRLF of what is written to it into LF, keeping every
// other byte, bare CRs included: the line ending of Maildir files on Unix,
// as qmail, Postfix and Dovecot write them.
type lfWriter struct {
	w  io.Writer
	cr bool // the last write ended with a CR whose fate is not known yet
}

func (l *lfWriter) Write(p []byte) (int, error) {
	n := len(p)
	if l.cr && len(p) > 0 {
		l.cr = false
		if p[0] != '\n' {
			if _, err := l.w.Write(crOnly); err != nil {
				return 0, err
			}
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\r')
		switch {
		case i < 0:
			_, err := l.w.Write(p)
			return n, err
		case i == len(p)-1:
			l.cr = true
			_, err := l.w.Write(p[:i])
			return n, err
		case p[i+1] == '\n':
			if _, err := l.w.Write(p[:i]); err != nil {
				return 0, err
			}
			p = p[i+1:] // starts with the LF
		default:
			if _, err := l.w.Write(p[:i+1]); err != nil {
				return 0, err
			}
			p = p[i+1:]
		}
	}
	return n, nil
}

// Close writes a CR left pending by the last write.
func (l *lfWriter) Close() error {
	if !l.cr {
		return nil
	}
	l.cr = false
	_, err := l.w.Write(crOnly)
	return err
}

// Header returns the message's header fields, parsed by net/mail from Data
// (nil when Data was not kept or has no valid header section).
func (m *Message) Header() mail.Header {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return nil
	}
	return msg.Header
}

// Body returns the message's body, in the wire form (CRLF line endings):
// Data after the header section and the blank line that ends it. A message
// whose first line is not a header field has no header section and is all
// body (the server stores it so, after a blank line of its own). A header
// section that no blank line ends stops at its first line that is not a
// header field (RFC 5322 §2.2), where the body starts; a message that is
// all header fields has an empty body.
func (m *Message) Body() []byte {
	rest := m.Data
	for first := true; len(rest) > 0; first = false {
		line, next, _ := bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if _, end := headerField(line, first); end {
			if len(line) == 0 {
				return next // after the blank line
			}
			return rest
		}
		rest = next
	}
	return rest
}
