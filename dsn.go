package smtpd

import (
	"strconv"
	"strings"
)

// DSN holds the Delivery Status Notification parameters (RFC 3461) that a
// client gave with a message: RET and ENVID on MAIL FROM, NOTIFY and ORCPT
// on each RCPT TO. The server advertises DSN, checks these parameters and
// records them, but sends no notifications: it stores every message locally
// and never bounces. A client that asked for NOTIFY=SUCCESS gets its answer
// in the 250 reply to the message, and nothing later.
type DSN struct {
	// Return is RET: "FULL", "HDRS" or "" when not given.
	Return string
	// EnvelopeID is ENVID with its xtext encoding undone; "" when not
	// given.
	EnvelopeID string
	// Recipients holds, for each of Message.To in the same order, what
	// its RCPT TO asked; nil when no RCPT TO carried NOTIFY or ORCPT.
	Recipients []DSNRecipient
}

// DSNRecipient is what one RCPT TO asked for (RFC 3461 §4.1, §4.2).
type DSNRecipient struct {
	// Notify is NOTIFY: ["NEVER"], or some of "SUCCESS", "FAILURE" and
	// "DELAY" in that order; nil when not given.
	Notify []string
	// OriginalType is the address type of ORCPT, lower-cased ("rfc822",
	// "utf-8"); "" when not given.
	OriginalType string
	// Original is the original recipient of ORCPT, its xtext encoding
	// undone.
	Original string
}

// recipientAdded records what goes with the recipient just added: its
// parameters (DSN), and in LMTP its reply after the data.
func (s *session) recipientAdded(rp rcptParams) {
	s.keepRcptParams(rp)
	if s.srv.set.lmtp {
		s.rcptReplies = append(s.rcptReplies, len(s.rcpts)-1)
	}
}

// recipientAgain records, in LMTP, that a recipient given again was
// answered 250: it gets a reply of its own after the data too.
func (s *session) recipientAgain(to address) {
	if !s.srv.set.lmtp {
		return
	}
	for i, rcpt := range s.rcpts {
		if rcpt.key() == to.key() {
			s.rcptReplies = append(s.rcptReplies, i)
			return
		}
	}
}

// keepRcptParams records the parameters of the recipient just added. Most
// clients send none: the list is only made once one does.
func (s *session) keepRcptParams(rp rcptParams) {
	if rp == (rcptParams{}) && s.rcptParams == nil {
		return
	}
	for len(s.rcptParams) < len(s.rcpts)-1 {
		s.rcptParams = append(s.rcptParams, rcptParams{})
	}
	s.rcptParams = append(s.rcptParams, rp)
}

// dsn returns the DSN parameters of the transaction, for its Message.
func (s *session) dsn() DSN {
	d := DSN{Return: s.params.ret, EnvelopeID: s.params.envID}
	for i, rp := range s.rcptParams {
		if rp == (rcptParams{}) {
			continue
		}
		if d.Recipients == nil {
			d.Recipients = make([]DSNRecipient, len(s.rcpts))
		}
		d.Recipients[i] = DSNRecipient{Notify: rp.notify.names(), OriginalType: rp.orcptType, Original: rp.orcpt}
	}
	return d
}

// traceMailDSN says in the trace, and the transcript, what the DSN
// parameters of MAIL FROM asked, decoded, and that no notification will
// come.
func (s *session) traceMailDSN(mp mailParams) {
	if mp.ret == "" && mp.envID == "" {
		return
	}
	var what []string
	switch mp.ret {
	case "FULL":
		what = append(what, "return the full message")
	case "HDRS":
		what = append(what, "return the headers only")
	}
	if mp.envID != "" {
		what = append(what, "envelope id "+strconv.Quote(mp.envID))
	}
	s.event("DSN (RFC 3461): %s; recorded, but this server stores locally and sends no notifications", strings.Join(what, ", "))
}

// traceRcptDSN is traceMailDSN for the DSN parameters of RCPT TO.
func (s *session) traceRcptDSN(rp rcptParams) {
	if rp == (rcptParams{}) {
		return
	}
	var what []string
	if rp.notify != 0 {
		what = append(what, "notify "+strings.Join(rp.notify.names(), ","))
	}
	if rp.orcpt != "" {
		what = append(what, "original recipient "+rp.orcptType+";"+strconv.Quote(rp.orcpt))
	}
	s.event("DSN (RFC 3461): %s; recorded, no notification will be sent", strings.Join(what, ", "))
}
