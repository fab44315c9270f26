package smtpd

import "github.com/tpe-protos/smtpd/internal/mimemsg"

// Attachment is a part of a message that is an attachment rather than a
// body to read (RFC 2183): one marked so, one with a file name and not
// marked inline, or one that is neither text nor marked inline.
type Attachment struct {
	// Filename is the part's file name, decoded (RFC 2047, RFC 2231); ""
	// when it has none.
	Filename string
	// ContentType is the media type in lower case, without parameters:
	// "application/pdf".
	ContentType string
	// Data is the content, with its transfer encoding (base64,
	// quoted-printable) undone.
	Data []byte
}

// Text returns the message's plain text: its first text/plain part that is
// not an attachment, with the transfer encoding undone and converted to
// UTF-8 (from UTF-8, US-ASCII, ISO-8859-1 or Windows-1252; text in another
// charset comes as it is). Line endings are as sent (CRLF). A message
// without a Content-Type is plain text, and so is one without a header
// section: Text is then its Body. It returns "" when there is no such part,
// or when Data was not kept (see Message.Data).
func (m *Message) Text() string { return m.mime().Text() }

// HTML returns the message's first text/html part that is not an
// attachment, decoded as Text decodes text; "" when there is none.
func (m *Message) HTML() string { return m.mime().HTML() }

// Attachments returns the message's attachments, in order; nil when it has
// none.
func (m *Message) Attachments() []Attachment {
	var list []Attachment
	for _, p := range m.mime().Attachments() {
		list = append(list, Attachment{Filename: p.Filename, ContentType: p.ContentType, Data: p.Body})
	}
	return list
}

// DecodedHeader returns the first value of the header field name with its
// encoded words decoded (RFC 2047): "=?UTF-8?Q?caf=C3=A9?=" reads "café".
// A value that does not decode is returned as it is; "" when the message
// has no such field. Header gives the fields as they were sent.
func (m *Message) DecodedHeader(name string) string {
	return mimemsg.DecodeHeader(m.Header().Get(name))
}

// mime parses the message's MIME structure (bounded: see
// internal/mimemsg). A message whose header section cannot be read is
// taken as a plain text body, as Body reads it.
func (m *Message) mime() *mimemsg.Message {
	if parsed, err := mimemsg.Parse(m.Data); err == nil {
		return parsed
	}
	parsed, _ := mimemsg.Parse(append([]byte("\r\n"), m.Body()...))
	return parsed
}
