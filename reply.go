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
	// why says in plain words what the reply means, and rfc where it is
	// defined: the explain mode of the trace shows both after the reply.
	// Every reply the server sends has them (explain_test.go checks).
	why, rfc string
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

// The fixed replies of the server. Every wire string the server can send is
// here or built in one of the functions below, so tests and docs can name
// them. Enhanced codes are from RFC 3463 (and RFC 6531 for X.6.7).
var (
	replyOK = reply{code: 250, enh: "2.0.0", text: "Ok",
		why: "done: the command worked", rfc: "RFC 5321 §4.2.2"}
	replySenderOK = reply{code: 250, enh: "2.1.0", text: "Ok",
		why: "sender accepted: a mail transaction has begun; now name the recipients with RCPT", rfc: "RFC 5321 §4.1.1.2"}
	replyRecipientOK = reply{code: 250, enh: "2.1.5", text: "Ok",
		why: "recipient accepted; add more with RCPT, or send the message with DATA", rfc: "RFC 5321 §4.1.1.3"}
	replyRecipientAgain = reply{code: 250, enh: "2.1.5", text: "Ok, already a recipient: kept once",
		why: "this recipient was already given in this transaction: it is kept once, so it gets one copy", rfc: "RFC 5321 §4.1.1.3"}
	replyStartData = reply{code: 354, text: "End data with <CR><LF>.<CR><LF>",
		why: "go ahead: send the message, then a line with only a dot; a line that starts with a dot gets a second one", rfc: "RFC 5321 §4.1.1.4, §4.5.2"}
	replyBye = reply{code: 221, enh: "2.0.0", text: "Bye", close: true,
		why: "goodbye: the server closes the connection", rfc: "RFC 5321 §4.1.1.10"}
	replyVRFY = reply{code: 252, enh: "2.0.0", text: "Cannot VRFY user, but will accept message and attempt delivery",
		why: "the server will not say whether a mailbox exists (that would help spammers), but would take mail for it", rfc: "RFC 5321 §3.5.3, §7.3"}
	replyHelp = reply{code: 214, enh: "2.0.0", text: "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\n" +
		"A session: EHLO, MAIL FROM:<you>, RCPT TO:<them>, DATA, the message, a line with only a dot.\n" +
		"See RFC 5321 for details",
		why: "help text for people; programs read EHLO's extension list instead", rfc: "RFC 5321 §4.1.1.8"}

	replyUnknownCommand = reply{code: 500, enh: "5.5.2", text: "Error: command not recognized",
		why: "the first word is not an SMTP command this server knows", rfc: "RFC 5321 §4.2.4"}
	replyLineTooLong = reply{code: 500, enh: "5.5.2", text: "Error: line too long",
		why: "a command line may be at most 512 octets, CRLF included; the line was skipped", rfc: "RFC 5321 §4.5.3.1.4"}
	replyEmptyLine = reply{code: 500, enh: "5.5.2", text: "Error: bad syntax",
		why: "an empty line is not a command", rfc: "RFC 5321 §4.1.1"}
	replyHTTP = reply{code: 500, enh: "5.5.2", text: "Error: this is an SMTP server, not an HTTP server", close: true,
		why: "a web request reached the mail port; nothing SMTP can follow, so the server hangs up", rfc: "RFC 5321 §4.2.4"}
	replyBareLF = reply{code: 500, enh: "5.5.2", text: "Error: bare LF received; lines must end with CRLF",
		why: "SMTP lines end with CR LF; this server is strict about it (use nc -C or telnet)", rfc: "RFC 5321 §2.3.8, §4.1.1"}
	replyBareLFData = reply{code: 554, enh: "5.6.0", text: "Error: bare LF in message data; lines must end with CRLF",
		why: "the message had a line ending in LF alone; this server is strict about CR LF", rfc: "RFC 5321 §2.3.8, §4.5.2"}
	replyNotImplemented = reply{code: 502, enh: "5.5.1", text: "Error: command not implemented",
		why: "a real SMTP command, but this server does not offer it", rfc: "RFC 5321 §4.2.4"}

	replySyntaxHELO = reply{code: 501, enh: "5.5.4", text: "Syntax: HELO hostname",
		why: "HELO takes one argument, the client's own host name", rfc: "RFC 5321 §4.1.1.1"}
	replySyntaxEHLO = reply{code: 501, enh: "5.5.4", text: "Syntax: EHLO hostname",
		why: "EHLO takes one argument, the client's own host name", rfc: "RFC 5321 §4.1.1.1"}
	replySyntaxMAIL = reply{code: 501, enh: "5.5.4", text: "Syntax: MAIL FROM:<address>",
		why: "the sender must be written FROM:<local@domain>, in angle brackets (<> for none)", rfc: "RFC 5321 §4.1.1.2, §4.1.2"}
	replySyntaxRCPT = reply{code: 501, enh: "5.5.4", text: "Syntax: RCPT TO:<address>",
		why: "the recipient must be written TO:<local@domain>, in angle brackets", rfc: "RFC 5321 §4.1.1.3, §4.1.2"}
	replySyntaxVRFY = reply{code: 501, enh: "5.5.4", text: "Syntax: VRFY address",
		why: "VRFY needs a name or address to look up", rfc: "RFC 5321 §4.1.1.6"}
	replyNoArgument = reply{code: 501, enh: "5.5.4", text: "Syntax: no arguments allowed",
		why: "this command takes no argument", rfc: "RFC 5321 §4.1.1"}

	replyNeedHELO = reply{code: 503, enh: "5.5.1", text: "Error: send HELO/EHLO first",
		why: "commands came in the wrong order: the client must introduce itself with EHLO (or HELO) first", rfc: "RFC 5321 §4.1.4"}
	replyNeedMAIL = reply{code: 503, enh: "5.5.1", text: "Error: need MAIL command",
		why: "commands came in the wrong order: a transaction starts with MAIL FROM", rfc: "RFC 5321 §4.1.4, §3.3"}
	replyNeedRCPT = reply{code: 503, enh: "5.5.1", text: "Error: need RCPT command",
		why: "commands came in the wrong order: DATA needs at least one accepted recipient", rfc: "RFC 5321 §4.1.1.4, §3.3"}
	replyNestedMAIL = reply{code: 503, enh: "5.5.1", text: "Error: nested MAIL command",
		why: "a transaction is already open; finish it with DATA or abort it with RSET first", rfc: "RFC 5321 §4.1.4"}

	replyTooBig = reply{code: 552, enh: "5.3.4", text: "Error: message size exceeds fixed limit",
		why: "the message is larger than the limit EHLO announced with SIZE; it was read to its end and refused", rfc: "RFC 1870 §6"}
	replyTooManyRcpts = reply{code: 452, enh: "4.5.3", text: "Error: too many recipients",
		why: "this message has all the recipients it may; send to the others in another transaction", rfc: "RFC 5321 §4.5.3.1.10"}
	replyDomainNotLocal = reply{code: 550, enh: "5.7.1", text: "Error: recipient domain not served here",
		why: "this server only takes mail for its own domains and relays nothing", rfc: "RFC 5321 §3.6.2, §7.1"}
	replyNeedSMTPUTF8 = reply{code: 553, enh: "5.6.7", text: "Error: non-ASCII address needs the SMTPUTF8 parameter",
		why: "an address with non-ASCII characters needs MAIL FROM:<...> SMTPUTF8", rfc: "RFC 6531 §3.4, §3.6"}
	replyNullRecipient = reply{code: 501, enh: "5.1.3", text: "Error: the null path is not a recipient",
		why: "<> means 'no sender' for bounces; it cannot be a recipient", rfc: "RFC 5321 §4.5.5"}
	replyUnknownParameter = reply{code: 555, enh: "5.5.4", text: "Error: unsupported parameter",
		why: "MAIL or RCPT carried a parameter this server did not announce (parameters need EHLO)", rfc: "RFC 5321 §4.1.1.11"}
	replyBadParameter = reply{code: 501, enh: "5.5.4", text: "Error: bad parameter value",
		why: "a known parameter (SIZE, BODY, SMTPUTF8; RET, ENVID, NOTIFY, ORCPT of DSN) had a wrong or repeated value", rfc: "RFC 1870, RFC 6152, RFC 6531, RFC 3461 §4"}
	replyLocalError = reply{code: 451, enh: "4.3.0", text: "Error: local delivery failed, try again later",
		why: "the server could not store the message safely; nothing was kept, so the client should try again later", rfc: "RFC 5321 §4.2.5"}
	replyFilterFailed = reply{code: 451, enh: "4.3.0", text: "Error: content filter failed, try again later",
		why: "the content filter failed or took too long; nothing was stored, so the client should try again later", rfc: "RFC 5321 §4.2.5"}
	replyFilterTooBig = reply{code: 552, enh: "5.3.4", text: "Error: filtered message exceeds fixed limit",
		why: "the content filter made the message larger than the size limit", rfc: "RFC 1870 §6"}
)

// replyFilterRejected refuses a message the content filter rejected, with
// the filter's reason.
func replyFilterRejected(reason string) reply {
	reason = replyText(reason)
	if reason == "" {
		reason = "Message rejected by content filter"
	}
	return reply{code: 554, enh: "5.7.1", text: reason,
		why: "the content filter refused the message for good; the text is the filter's reason", rfc: "RFC 5321 §4.2.3"}
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
	return reply{code: 220, text: host + " ESMTP smtpd",
		why: "the greeting: the server is ready; the client speaks next, with EHLO", rfc: "RFC 5321 §3.1, §4.3.1"}
}

func replyTooManyErrors(host string) reply {
	return reply{code: 421, enh: "4.7.0", text: host + " Error: too many errors, closing connection", close: true,
		why: "the client made too many errors in one session, so the server hangs up", rfc: "RFC 5321 §4.2.2 (421)"}
}

func replyIdleTimeout(host string) reply {
	return reply{code: 421, enh: "4.4.2", text: host + " Error: timeout exceeded, closing connection", close: true,
		why: "the client was silent too long, so the server hangs up", rfc: "RFC 5321 §4.5.3.2"}
}

func replyShuttingDown(host string) reply {
	return reply{code: 421, enh: "4.3.2", text: host + " Service shutting down, closing connection", close: true,
		why: "the server is stopping; between transactions it says so and hangs up, and the client should retry later", rfc: "RFC 5321 §3.8"}
}

func replyTooManyConns(host string) reply {
	return reply{code: 421, enh: "4.3.2", text: host + " Too many connections, try again later", close: true,
		why: "the server has as many sessions as it allows; the client should retry later", rfc: "RFC 5321 §3.8, §4.2.2"}
}

func replyQueued(id string) reply {
	return reply{code: 250, enh: "2.0.0", text: "Ok: queued as " + id,
		why: "the message is safely on disk; from now on the server is responsible for it", rfc: "RFC 5321 §4.1.1.4, §6.1"}
}

// The replies of STARTTLS (RFC 3207), AUTH (RFC 4954) and the abuse limits.
var (
	replyReadyTLS = reply{code: 220, enh: "2.0.0", text: "Ready to start TLS",
		why: "go ahead with the TLS handshake; afterwards everything starts again with EHLO", rfc: "RFC 3207 §4"}
	replyTLSActive = reply{code: 503, enh: "5.5.1", text: "Error: TLS already active",
		why: "the session is already encrypted; STARTTLS works once", rfc: "RFC 3207 §4.2"}
	replyTLSInTransaction = reply{code: 503, enh: "5.5.1", text: "Error: STARTTLS not allowed during a mail transaction",
		why: "finish or RSET the transaction before starting TLS, which resets everything", rfc: "RFC 3207 §4.2"}

	replyAuthOK = reply{code: 235, enh: "2.7.0", text: "Authentication successful",
		why: "the credentials are right: the session now acts as this user", rfc: "RFC 4954 §4, §6"}
	replyAuthNeedsEHLO = reply{code: 503, enh: "5.5.1", text: "Error: send EHLO first",
		why: "AUTH is an extension: the client must learn of it with EHLO first", rfc: "RFC 4954 §4"}
	replyAlreadyAuthenticated = reply{code: 503, enh: "5.5.1", text: "Error: already authenticated",
		why: "a session authenticates once", rfc: "RFC 4954 §4"}
	replyAuthInTransaction = reply{code: 503, enh: "5.5.1", text: "Error: AUTH not allowed during a mail transaction",
		why: "authenticate before MAIL FROM, not in the middle of a transaction", rfc: "RFC 4954 §4"}
	replySyntaxAUTH = reply{code: 501, enh: "5.5.4", text: "Syntax: AUTH mechanism [initial-response]",
		why: "AUTH names a mechanism (PLAIN, LOGIN), optionally followed by the first response in base64", rfc: "RFC 4954 §4"}
	replyBadBase64 = reply{code: 501, enh: "5.5.2", text: "Error: cannot decode base64 response",
		why: "SASL responses travel in base64, and this one was not valid base64", rfc: "RFC 4954 §4"}
	replyAuthCancelled = reply{code: 501, enh: "5.7.0", text: "Authentication cancelled",
		why: "the client answered '*', which cancels the exchange", rfc: "RFC 4954 §4"}
	replyUnknownMechanism = reply{code: 504, enh: "5.5.4", text: "Unrecognized authentication type",
		why: "the server offers only the mechanisms EHLO listed after AUTH", rfc: "RFC 4954 §4, §6"}
	replyAuthFailed = reply{code: 535, enh: "5.7.8", text: "Authentication credentials invalid",
		why: "wrong user name or password (the delay before this reply slows down guessing)", rfc: "RFC 4954 §6"}
	replyAuthTemporary = reply{code: 454, enh: "4.7.0", text: "Temporary authentication failure",
		why: "the server could not check the credentials just now; try again later", rfc: "RFC 4954 §6"}
	replyEncryptionRequired = reply{code: 538, enh: "5.7.11", text: "Encryption required for requested authentication mechanism",
		why: "a password must not cross the network in the clear: STARTTLS first", rfc: "RFC 4954 §6"}
	replyAuthRequired = reply{code: 530, enh: "5.7.0", text: "Authentication required",
		why: "this server takes mail only from authenticated users: AUTH first", rfc: "RFC 4954 §6"}
	replyNeedSTARTTLS = reply{code: 530, enh: "5.7.0", text: "Must issue a STARTTLS command first",
		why: "this server wants the session encrypted before this command", rfc: "RFC 3207 §4"}
)

func replyTooManyAuthFailures(host string) reply {
	return reply{code: 421, enh: "4.7.0", text: host + " Error: too many authentication failures, closing connection", close: true,
		why: "too many wrong passwords in one session: the server hangs up to slow down guessing", rfc: "RFC 4954 §6; RFC 5321 §4.2.2 (421)"}
}

func replyTooManyFromIP(host string) reply {
	return reply{code: 421, enh: "4.7.0", text: host + " Error: too many connections from your address, try again later", close: true,
		why: "this client address already has as many sessions as one address may; retry later", rfc: "RFC 5321 §4.2.2 (421)"}
}

func replySessionTimeout(host string) reply {
	return reply{code: 421, enh: "4.4.2", text: host + " Error: session time limit exceeded, closing connection", close: true,
		why: "the session lasted longer than the server allows any session to", rfc: "RFC 5321 §4.5.3.2"}
}

// replyEarlyTalker answers a client that spoke before the greeting, in
// place of the greeting (RFC 5321 §3.1 allows 554 there).
func replyEarlyTalker(host string) reply {
	return reply{code: 554, enh: "5.5.0", text: host + " Error: you spoke before the greeting, closing connection", close: true,
		why: "a client must wait for the 220 greeting before it speaks; spam software often does not", rfc: "RFC 5321 §3.1, §4.3.1"}
}
