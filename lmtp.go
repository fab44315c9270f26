package smtpd

import (
	"fmt"
	"path"
)

// LMTP (RFC 2033) is SMTP for the last hop, from a mail system to the
// mailboxes: the client greets with LHLO, and after the data of a message
// the server answers for each recipient on its own, so that one mailbox
// that cannot take the message does not fail the others. Everything else
// is the SMTP of the rest of the package (Config.LMTP switches it on).

// The replies of LMTP.
var (
	replyUseLHLO = reply{code: 500, enh: "5.5.1", text: "Error: this is an LMTP server; greet with LHLO",
		why: "an LMTP server is greeted with LHLO, never HELO or EHLO, so that SMTP and LMTP cannot be confused", rfc: "RFC 2033 §4.1"}
	replySyntaxLHLO = reply{code: 501, enh: "5.5.4", text: "Syntax: LHLO hostname",
		why: "LHLO takes one argument, the client's own host name", rfc: "RFC 2033 §4.1; RFC 5321 §4.1.1.1"}
	// replyLHLO's text is made by helloText.
	replyLHLO = reply{code: 250,
		why: "hello (LMTP): the lines after the first list the extensions the client may use, as after EHLO", rfc: "RFC 2033 §4.1; RFC 2920, 1870, 6152, 2034, 6531, 3461, 3030"}
)

func replyGreetingLMTP(host string) reply {
	return reply{code: 220, text: host + " LMTP smtpd",
		why: "the greeting of an LMTP server: the client speaks next, with LHLO", rfc: "RFC 2033 §4.1; RFC 5321 §4.3.1"}
}

// greeting returns the server's greeting: SMTP's, or LMTP's.
func (s *session) greeting() reply {
	if s.srv.set.lmtp {
		return replyGreetingLMTP(s.srv.set.hostname)
	}
	return replyGreeting(s.srv.set.hostname)
}

// lmtpCommand answers, in LMTP, the commands LMTP changes: LHLO in place
// of HELO and EHLO, which are refused. It reports false for the others.
func (s *session) lmtpCommand(verb, arg string) (reply, bool) {
	switch verb {
	case "LHLO":
		return s.cmdLHLO(arg), true
	case "HELO", "EHLO":
		return replyUseLHLO, true
	}
	return reply{}, false
}

// cmdLHLO answers LHLO: EHLO's reply, with the same extensions
// (RFC 2033 §4.1).
func (s *session) cmdLHLO(arg string) reply {
	return s.extendedHello(arg, replySyntaxLHLO, replyLHLO)
}

// createForRecipients creates the delivery of an LMTP message. If a
// mailbox cannot be opened, the message goes to the others: the recipients
// of that mailbox alone get 451 after the data (refused, by their index in
// the transaction). Only when none can be opened does it fail.
func (s *session) createForRecipients(m *Message) (d *delivery, refused map[int]reply, err error) {
	boxes := s.mailboxes()
	d, err = s.srv.store.create(boxes)
	if err == nil || len(boxes) == 1 {
		return d, nil, err
	}
	broken := make(map[string]bool)
	var usable []string
	for _, box := range boxes {
		if err := s.srv.store.with(box, func(*mailbox) error { return nil }); err != nil {
			broken[box] = true
			s.logger().Error("smtpd: mailbox unusable", "queue_id", m.ID, "mailbox", box, "err", err)
			continue
		}
		usable = append(usable, box)
	}
	if len(usable) == 0 || len(broken) == 0 {
		return nil, nil, err
	}
	if d, err = s.srv.store.create(usable); err != nil {
		return nil, nil, err
	}
	refused = make(map[int]reply)
	for i, to := range s.rcpts {
		if broken[mailboxName(to.local)] {
			s.srv.stats.failed.Add(1)
			refused[i] = replyLocalError
		}
	}
	return d, refused, nil
}

// recipientFaults asks the fault plan about the end of the data for each
// recipient of an LMTP message not refused yet, and takes out of the
// delivery the mailboxes left without a recipient. m.To is left with the
// recipients that get the message. It returns a reply, and true, when the
// message must not be stored at all: a rule drops the connection, or no
// recipient is left.
func (s *session) recipientFaults(in *incoming, m *Message) (reply, bool) {
	var last reply
	for i, to := range s.rcpts {
		if _, done := in.refused[i]; done {
			continue
		}
		r, ok := s.fault(FaultDataEnd, to.raw)
		if !ok {
			continue
		}
		if r.close {
			return r, true
		}
		if in.refused == nil {
			in.refused = make(map[int]reply)
		}
		in.refused[i], last = r, r
	}
	if len(in.refused) == 0 {
		return reply{}, false
	}
	if len(in.refused) == len(s.rcpts) {
		return last, true
	}
	kept := make(map[string]bool)
	var to []string
	var dsn []DSNRecipient
	for i, rcpt := range s.rcpts {
		if _, refused := in.refused[i]; !refused {
			kept[mailboxName(rcpt.local)] = true
			to = append(to, rcpt.raw)
			if m.DSN.Recipients != nil {
				dsn = append(dsn, m.DSN.Recipients[i])
			}
		}
	}
	if err := in.d.keepOnly(kept); err != nil {
		s.logger().Error("smtpd: delivery failed", "queue_id", m.ID, "err", err)
		return replyLocalError, true
	}
	m.To, m.DSN.Recipients = to, dsn
	return reply{}, false
}

// replyEachRecipient sends the replies that end an LMTP message: one per
// RCPT answered 250, in RCPT order (RFC 2033 §4.2), a recipient given twice
// twice; each is r or the recipient's own refusal. It returns the last,
// which the caller sends.
func (s *session) replyEachRecipient(refused map[int]reply, r reply) reply {
	s.event("LMTP: a reply for each of the %d recipients follows, in RCPT order (RFC 2033 §4.2)", len(s.rcptReplies))
	var last reply
	for n, i := range s.rcptReplies {
		ri := r
		if own, ok := refused[i]; ok {
			ri = own
		}
		if n > 0 {
			s.send(last)
		}
		last = replyForRecipient(s.rcpts[i].raw, ri)
	}
	return last
}

// replyForRecipient is r for one recipient of an LMTP message: the same
// code, with the recipient named first, as LMTP servers do.
func replyForRecipient(rcpt string, r reply) reply {
	return reply{code: r.code, enh: r.enh, text: fmt.Sprintf("<%s> %s", rcpt, r.text),
		why: "for " + rcpt + " alone: " + r.why, rfc: r.rfc + "; RFC 2033 §4.2"}
}

// keepOnly takes out of the delivery, before it is committed, the
// mailboxes not in kept: LMTP refused their recipients after the data.
// An unnamed file is in no directory yet; a named one sits in tmp/ of the
// first mailbox, and if that one goes, the file is first linked into tmp/
// of the first one kept.
func (d *delivery) keepOnly(kept map[string]bool) error {
	first := d.boxes[0]
	var boxes []string
	for _, box := range d.boxes {
		if kept[box] {
			boxes = append(boxes, box)
		}
	}
	if !d.unnamed && !kept[first] {
		if err := d.md.root.Link(path.Join(first, "tmp", d.name), path.Join(boxes[0], "tmp", d.name)); err != nil {
			return fmt.Errorf("maildir: move into %q: %w", boxes[0]+"/tmp", err)
		}
		d.removeFrom(first, "tmp", d.name)
	}
	d.boxes = boxes
	return nil
}
