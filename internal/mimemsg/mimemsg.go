// Package mimemsg reads the MIME structure of a message (RFC 2045–2047,
// RFC 2183, RFC 2231): its header fields decoded, its text and HTML bodies,
// and its attachments. It serves the smtpdtest helpers and the HTTP view of
// stored mail, so both read a message the same way.
//
// It reads a message in its wire form (CRLF) or as stored in a Maildir (LF),
// never fails on malformed MIME (what cannot be read as parts stays one part
// of raw bytes), and bounds the work a hostile message can cause: at most
// MaxDepth levels of nested multiparts and MaxParts leaf parts.
package mimemsg

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// The bounds on a message's structure. Deeper or further parts are not
// read as parts: a deeper multipart is one part of raw bytes, and parts past
// MaxParts are dropped (Message.Truncated says so).
const (
	MaxDepth = 16
	MaxParts = 1000
)

// Message is a parsed message.
type Message struct {
	// Header holds the header fields as they were sent (encoded words
	// included); use DecodeHeader on a value to read it.
	Header mail.Header
	// Parts are the leaf parts, depth first, in the order of the message;
	// Parts[i].Index is i. A message that is not multipart has one part,
	// its body.
	Parts []*Part
	// Truncated is set when the message had more than MaxParts leaf parts.
	Truncated bool
}

// Part is one leaf of the MIME tree: not a multipart. A message/rfc822
// part is a leaf too, kept whole as an attachment.
type Part struct {
	Index int
	// Header is the part's own header section.
	Header textproto.MIMEHeader
	// ContentType is the media type in lower case, "text/plain" when the
	// part does not say (RFC 2045 §5.2).
	ContentType string
	// Charset is the charset parameter in lower case ("" when absent).
	Charset string
	// Disposition is "inline", "attachment" or "" (RFC 2183), in lower case.
	Disposition string
	// Filename is the decoded file name, from the disposition's filename
	// or the content type's name parameter ("" when neither).
	Filename string
	// ContentID is the Content-ID without its angle brackets.
	ContentID string
	// Body is the content with its transfer encoding undone (base64,
	// quoted-printable), still in its charset: see Part.Text.
	Body []byte
}

// Parse reads a message. It returns an error only when the header section
// cannot be read; a body that is not valid MIME is kept as one part.
func Parse(raw []byte) (*Message, error) {
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(msg.Body) // a bytes.Reader does not fail
	m := &Message{Header: msg.Header}
	m.walk(textproto.MIMEHeader(msg.Header), body, 0)
	return m, nil
}

// walk adds the leaves of the entity with header h and body to m.
func (m *Message) walk(h textproto.MIMEHeader, body []byte, depth int) {
	mediaType, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mediaType == "" {
		mediaType, params = "text/plain", map[string]string{}
	}
	if strings.HasPrefix(mediaType, "multipart/") && params["boundary"] != "" && depth < MaxDepth {
		if m.walkMultipart(body, params["boundary"], depth) {
			return
		}
	}
	m.addLeaf(h, mediaType, params, body)
}

// walkMultipart adds the parts of a multipart body; it reports false, having
// added nothing, when the body holds no part at all (then the caller keeps
// it as one raw part).
func (m *Message) walkMultipart(body []byte, boundary string, depth int) bool {
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	found := false
	for {
		p, err := r.NextRawPart()
		if err != nil {
			// io.EOF after the closing delimiter; anything else is
			// broken MIME, and what was read so far stands.
			return found
		}
		// A part cut short (no closing delimiter) is kept as far as
		// it goes, and ends the multipart.
		content, err := io.ReadAll(p)
		found = true
		m.walk(p.Header, content, depth+1)
		if err != nil {
			return true
		}
	}
}

// addLeaf appends a leaf part, unless MaxParts were read already.
func (m *Message) addLeaf(h textproto.MIMEHeader, mediaType string, params map[string]string, body []byte) {
	if len(m.Parts) >= MaxParts {
		m.Truncated = true
		return
	}
	p := &Part{
		Index:       len(m.Parts),
		Header:      h,
		ContentType: mediaType,
		Charset:     strings.ToLower(params["charset"]),
		ContentID:   strings.Trim(h.Get("Content-Id"), "<> \t"),
		Body:        decodeTransfer(h.Get("Content-Transfer-Encoding"), body),
	}
	if disp, dparams, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil {
		p.Disposition = disp
		p.Filename = DecodeHeader(dparams["filename"])
	}
	if p.Filename == "" {
		p.Filename = DecodeHeader(params["name"])
	}
	m.Parts = append(m.Parts, p)
}

// decodeTransfer undoes a content transfer encoding (RFC 2045 §6). Bytes
// that do not decode are kept as they came, so nothing is silently lost.
func decodeTransfer(encoding string, body []byte) []byte {
	var r io.Reader
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "base64":
		// The decoder skips CR and LF; other white space would stop it.
		r = base64.NewDecoder(base64.StdEncoding, bytes.NewReader(stripSpace(body)))
	case "quoted-printable":
		r = quotedprintable.NewReader(bytes.NewReader(body))
	default:
		return body
	}
	decoded, err := io.ReadAll(r)
	if err != nil && len(decoded) == 0 {
		return body
	}
	return decoded
}

// stripSpace removes the white space base64 lines may carry.
func stripSpace(b []byte) []byte {
	return bytes.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, b)
}

// IsAttachment reports whether the part is an attachment rather than a body
// to show: marked as one (RFC 2183), named and not marked inline, or
// neither text nor marked inline.
func (p *Part) IsAttachment() bool {
	switch {
	case p.Disposition == "attachment":
		return true
	case p.Disposition == "inline":
		return false
	}
	return p.Filename != "" || !strings.HasPrefix(p.ContentType, "text/")
}

// Text returns the part's body converted to UTF-8 from its charset. It
// knows UTF-8, US-ASCII, ISO-8859-1 and Windows-1252; other charsets give
// the bytes as they are and an error.
func (p *Part) Text() (string, error) {
	return toUTF8(p.Charset, p.Body)
}

// Text returns the first text/plain body that is not an attachment, in
// UTF-8, or "" when there is none.
func (m *Message) Text() string { return m.body("text/plain") }

// HTML returns the first text/html body that is not an attachment, in
// UTF-8, or "" when there is none.
func (m *Message) HTML() string { return m.body("text/html") }

func (m *Message) body(mediaType string) string {
	for _, p := range m.Parts {
		if p.ContentType == mediaType && !p.IsAttachment() {
			s, _ := p.Text()
			return s
		}
	}
	return ""
}

// Attachments returns the parts that are attachments, in order.
func (m *Message) Attachments() []*Part {
	var list []*Part
	for _, p := range m.Parts {
		if p.IsAttachment() {
			list = append(list, p)
		}
	}
	return list
}

// Subject returns the decoded Subject field.
func (m *Message) Subject() string { return DecodeHeader(m.Header.Get("Subject")) }

// Field is one header field as it was sent: its name as written, its value
// unfolded (RFC 5322 §2.2.3) but not decoded.
type Field struct {
	Name, Value string
}

// MaxFields bounds what HeaderFields returns.
const MaxFields = 1000

// HeaderFields returns the header fields of a message, or of a part, in their
// order: net/mail's Header is a map and loses it, while a reader of a
// message wants its Received fields in sequence. It reads up to the blank
// line that ends the header section and at most MaxFields fields; a line
// that is not a field ends the section early.
func HeaderFields(raw []byte) []Field {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	var fields []Field
	for len(fields) < MaxFields {
		line, err := r.ReadContinuedLine()
		if line == "" {
			return fields
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return fields
		}
		fields = append(fields, Field{Name: name, Value: strings.TrimSpace(value)})
		if err != nil {
			return fields
		}
	}
	return fields
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// DecodeHeader decodes the encoded words of a header field value
// (RFC 2047); a value that does not decode is returned as it is.
func DecodeHeader(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	s, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return s
}

// AddressParser parses address fields with their display names decoded.
var AddressParser = &mail.AddressParser{WordDecoder: wordDecoder}

var errCharset = errors.New("mimemsg: unknown charset")

// charsetReader is the mime.WordDecoder's hook for charsets other than
// UTF-8 (which it knows itself).
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(input)
	if err != nil {
		return nil, err
	}
	s, err := toUTF8(strings.ToLower(charset), b)
	if err != nil {
		return nil, err
	}
	return strings.NewReader(s), nil
}

// toUTF8 converts text in charset to UTF-8.
func toUTF8(charset string, b []byte) (string, error) {
	switch charset {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return string(b), nil
	case "iso-8859-1", "latin1", "iso_8859-1", "l1":
		return decodeSingleByte(b, nil), nil
	case "windows-1252", "cp1252":
		return decodeSingleByte(b, &cp1252High), nil
	}
	return string(b), errCharset
}

// decodeSingleByte maps each byte to a rune: through high for 0x80–0x9F when
// it is given (Windows-1252), as ISO-8859-1 otherwise.
func decodeSingleByte(b []byte, high *[32]rune) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		r := rune(c)
		if high != nil && c >= 0x80 && c < 0xA0 {
			r = high[c-0x80]
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// cp1252High is Windows-1252's 0x80–0x9F; the five unassigned bytes map to
// U+FFFD.
var cp1252High = [32]rune{
	'€', '\uFFFD', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\uFFFD', 'Ž', '\uFFFD',
	'\uFFFD', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\uFFFD', 'ž', 'Ÿ',
}
