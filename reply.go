package smtpd

import (
	"strconv"
	"strings"
)

// reply is one SMTP reply (RFC 5321 §4.2): a three-digit code, an RFC 3463
// enhanced status code and one or more lines of text.
type reply struct {
	code int
	// enh is the enhanced status code ("2.1.0"). It is empty only for the
	// greeting and the HELO/EHLO replies, which RFC 2034 §3 exempts.
	enh string
	// text holds the reply text; a '\n' separates the lines of a
	// multi-line reply.
	text string
	// close ends the session once the reply is sent (QUIT, 421).
	close bool
}

// appendTo appends the wire form of r to b: every line but the last is
// "NNN-", the last "NNN " (RFC 5321 §4.2.1), and each carries the enhanced
// code.
func (r reply) appendTo(b []byte) []byte {
	text := r.text
	for {
		line, rest, more := strings.Cut(text, "\n")
		b = strconv.AppendInt(b, int64(r.code), 10)
		if more {
			b = append(b, '-')
		} else {
			b = append(b, ' ')
		}
		if r.enh != "" {
			b = append(b, r.enh...)
			b = append(b, ' ')
		}
		b = append(b, line...)
		b = append(b, '\r', '\n')
		if !more {
			return b
		}
		text = rest
	}
}

// String returns the reply as it appears on the wire, without the final CRLF
// and with CRLF between lines; traces and tests use it.
func (r reply) String() string {
	return strings.TrimSuffix(strings.ReplaceAll(string(r.appendTo(nil)), "\r\n", "\n"), "\n")
}

// isError reports whether the reply counts against the session's error
// limit: every permanent (5xx) reply does.
func (r reply) isError() bool { return r.code >= 500 }

// withText returns a copy of r with a different text.
func (r reply) withText(text string) reply {
	r.text = text
	return r
}

// The fixed replies of the server. Every wire string the server can send is
// here or built in one of the functions below, so tests and docs can name
// them. Enhanced codes are from RFC 3463 (and RFC 6531 for X.6.7).
var (
	replyOK          = reply{code: 250, enh: "2.0.0", text: "Ok"}
	replySenderOK    = reply{code: 250, enh: "2.1.0", text: "Ok"}
	replyRecipientOK = reply{code: 250, enh: "2.1.5", text: "Ok"}
	replyStartData   = reply{code: 354, text: "End data with <CR><LF>.<CR><LF>"}
	replyBye         = reply{code: 221, enh: "2.0.0", text: "Bye", close: true}
	replyVRFY        = reply{code: 252, enh: "2.0.0", text: "Cannot VRFY user, but will accept message and attempt delivery"}
	replyHelp        = reply{code: 214, enh: "2.0.0", text: "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\n" +
		"A session: EHLO, MAIL FROM:<you>, RCPT TO:<them>, DATA, the message, a line with only a dot.\n" +
		"See RFC 5321 for details"}

	replyUnknownCommand = reply{code: 500, enh: "5.5.2", text: "Error: command not recognized"}
	replyLineTooLong    = reply{code: 500, enh: "5.5.2", text: "Error: line too long"}
	replyEmptyLine      = reply{code: 500, enh: "5.5.2", text: "Error: bad syntax"}
	replyHTTP           = reply{code: 500, enh: "5.5.2", text: "Error: this is an SMTP server, not an HTTP server", close: true}
	replyNotImplemented = reply{code: 502, enh: "5.5.1", text: "Error: command not implemented"}

	replySyntaxHELO = reply{code: 501, enh: "5.5.4", text: "Syntax: HELO hostname"}
	replySyntaxEHLO = reply{code: 501, enh: "5.5.4", text: "Syntax: EHLO hostname"}
	replySyntaxMAIL = reply{code: 501, enh: "5.5.4", text: "Syntax: MAIL FROM:<address>"}
	replySyntaxRCPT = reply{code: 501, enh: "5.5.4", text: "Syntax: RCPT TO:<address>"}
	replySyntaxVRFY = reply{code: 501, enh: "5.5.4", text: "Syntax: VRFY address"}
	replyNoArgument = reply{code: 501, enh: "5.5.4", text: "Syntax: no arguments allowed"}

	replyNeedHELO   = reply{code: 503, enh: "5.5.1", text: "Error: send HELO/EHLO first"}
	replyNeedMAIL   = reply{code: 503, enh: "5.5.1", text: "Error: need MAIL command"}
	replyNeedRCPT   = reply{code: 503, enh: "5.5.1", text: "Error: need RCPT command"}
	replyNestedMAIL = reply{code: 503, enh: "5.5.1", text: "Error: nested MAIL command"}

	replyTooBig           = reply{code: 552, enh: "5.3.4", text: "Error: message size exceeds fixed limit"}
	replyTooManyRcpts     = reply{code: 452, enh: "4.5.3", text: "Error: too many recipients"}
	replyDomainNotLocal   = reply{code: 550, enh: "5.7.1", text: "Error: recipient domain not served here"}
	replyNeedSMTPUTF8     = reply{code: 553, enh: "5.6.7", text: "Error: non-ASCII address needs the SMTPUTF8 parameter"}
	replyNullRecipient    = reply{code: 501, enh: "5.1.3", text: "Error: the null path is not a recipient"}
	replyUnknownParameter = reply{code: 555, enh: "5.5.4", text: "Error: unsupported parameter"}
	replyBadParameter     = reply{code: 501, enh: "5.5.4", text: "Error: bad parameter value"}
	replyLocalError       = reply{code: 451, enh: "4.3.0", text: "Error: local delivery failed, try again later"}
	replyFilterFailed     = reply{code: 451, enh: "4.3.0", text: "Error: content filter failed, try again later"}
	replyFilterTooBig     = reply{code: 552, enh: "5.3.4", text: "Error: filtered message exceeds fixed limit"}
)

// replyFilterRejected refuses a message the content filter rejected, with
// the filter's reason.
func replyFilterRejected(reason string) reply {
	reason = replyText(reason)
	if reason == "" {
		reason = "Message rejected by content filter"
	}
	return reply{code: 554, enh: "5.7.1", text: reason}
}

// replyText makes text from elsewhere (a filter's reason) fit in a reply:
// printable ASCII on one line, 200 characters at most.
func replyText(text string) string {
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f {
			return ' '
		}
		return r
	}, text)
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > 200 {
		text = text[:200]
	}
	return text
}

// The replies that carry the server's hostname and close the session.
func replyGreeting(host string) reply {
	return reply{code: 220, text: host + " ESMTP smtpd"}
}

func replyTooManyErrors(host string) reply {
	return reply{code: 421, enh: "4.7.0", text: host + " Error: too many errors, closing connection", close: true}
}

func replyIdleTimeout(host string) reply {
	return reply{code: 421, enh: "4.4.2", text: host + " Error: timeout exceeded, closing connection", close: true}
}

func replyShuttingDown(host string) reply {
	return reply{code: 421, enh: "4.3.2", text: host + " Service shutting down, closing connection", close: true}
}

func replyTooManyConns(host string) reply {
	return reply{code: 421, enh: "4.3.2", text: host + " Too many connections, try again later", close: true}
}

func replyQueued(id string) reply {
	return reply{code: 250, enh: "2.0.0", text: "Ok: queued as " + id}
}

// The replies of STARTTLS (RFC 3207), AUTH (RFC 4954) and the abuse limits.
var (
	replyReadyTLS         = reply{code: 220, enh: "2.0.0", text: "Ready to start TLS"}
	replyTLSActive        = reply{code: 503, enh: "5.5.1", text: "Error: TLS already active"}
	replyTLSInTransaction = reply{code: 503, enh: "5.5.1", text: "Error: STARTTLS not allowed during a mail transaction"}

	replyAuthOK               = reply{code: 235, enh: "2.7.0", text: "Authentication successful"}
	replyAuthNeedsEHLO        = reply{code: 503, enh: "5.5.1", text: "Error: send EHLO first"}
	replyAlreadyAuthenticated = reply{code: 503, enh: "5.5.1", text: "Error: already authenticated"}
	replyAuthInTransaction    = reply{code: 503, enh: "5.5.1", text: "Error: AUTH not allowed during a mail transaction"}
	replySyntaxAUTH           = reply{code: 501, enh: "5.5.4", text: "Syntax: AUTH mechanism [initial-response]"}
	replyBadBase64            = reply{code: 501, enh: "5.5.2", text: "Error: cannot decode base64 response"}
	replyAuthCancelled        = reply{code: 501, enh: "5.7.0", text: "Authentication cancelled"}
	replyUnknownMechanism     = reply{code: 504, enh: "5.5.4", text: "Unrecognized authentication type"}
	replyAuthFailed           = reply{code: 535, enh: "5.7.8", text: "Authentication credentials invalid"}
	replyAuthTemporary        = reply{code: 454, enh: "4.7.0", text: "Temporary authentication failure"}
	replyEncryptionRequired   = reply{code: 538, enh: "5.7.11", text: "Encryption required for requested authentication mechanism"}
	replyAuthRequired         = reply{code: 530, enh: "5.7.0", text: "Authentication required"}
	replyNeedSTARTTLS         = reply{code: 530, enh: "5.7.0", text: "Must issue a STARTTLS command first"}
)

func replyTooManyAuthFailures(host string) reply {
	return reply{code: 421, enh: "4.7.0", text: host + " Error: too many authentication failures, closing connection", close: true}
}

func replyTooManyFromIP(host string) reply {
	return reply{code: 421, enh: "4.7.0", text: host + " Error: too many connections from your address, try again later", close: true}
}

func replySessionTimeout(host string) reply {
	return reply{code: 421, enh: "4.4.2", text: host + " Error: session time limit exceeded, closing connection", close: true}
}

// replyEarlyTalker answers a client that spoke before the greeting, in
// place of the greeting (RFC 5321 §3.1 allows 554 there).
func replyEarlyTalker(host string) reply {
	return reply{code: 554, enh: "5.5.0", text: host + " Error: you spoke before the greeting, closing connection", close: true}
}
