package smtpd

import (
	"bytes"
	"io"
)

// incoming is a message being received, by DATA or by BDAT chunks: the
// delivery its data goes to, and the writers that see the data on its way.
type incoming struct {
	d      *delivery
	filter Filter // the content filter, if one runs
	sp     *spool // the filter's input; nil without a filter
	stored *storedWriter
	kept   *bytes.Buffer // the wire form, for Config.Delivered
	strict *bareLFDetector
	traced *bodyTrace
	// data takes the message data in its wire form: it goes to all of
	// the above.
	data io.Writer
	// refused holds the replies of recipients that will not get the
	// message, by their index in Message.To (LMTP only, lmtp.go).
	refused map[int]reply
}

// openMessage starts receiving the transaction's message, described by m,
// into in: it creates the delivery and the writers its data goes through.
// When it cannot, it returns the reply to send, and false. (in is the
// caller's, so that it need not be allocated once per message.)
func (s *session) openMessage(m *Message, in *incoming) (reply, bool) {
	*in = incoming{filter: s.srv.activeFilter()}
	var err error
	if s.srv.set.lmtp {
		in.d, in.refused, err = s.createForRecipients(m)
	} else {
		in.d, err = s.srv.store.create(s.mailboxes())
	}
	var sink io.Writer = in.d
	if err == nil && in.filter != nil {
		// The filter reads the stored form from a spool file and
		// its output goes to the delivery.
		if in.sp, err = in.d.newSpool(); err != nil {
			in.d.abort()
		} else {
			sink = in.sp
		}
	}
	if err != nil {
		s.srv.stats.failed.Add(1)
		s.logger().Error("smtpd: cannot start delivery", "queue_id", m.ID, "err", err)
		return replyLocalError, false
	}
	host := s.srv.set.hostname
	in.stored = newStoredWriter(sink, func(seen headerSet) []byte {
		return append(m.traceHeaders(host), m.missingHeaders(seen, host)...)
	})
	writers := []io.Writer{in.stored}
	if s.srv.set.delivered != nil {
		in.kept = new(bytes.Buffer)
		writers = append(writers, in.kept)
	}
	// A binary body (RFC 3030 §3) may hold any octet, bare LFs included.
	if s.srv.set.strictCRLF && m.BodyType != "BINARYMIME" {
		in.strict = new(bareLFDetector)
		writers = append(writers, in.strict)
	}
	in.traced = s.srv.trace.messageTrace(s.id)
	if in.traced != nil {
		writers = append(writers, in.traced)
	}
	// Most messages go to the store alone: MultiWriter, two allocations
	// per message, only when there are others.
	in.data = io.Writer(in.stored)
	if len(writers) > 1 {
		in.data = io.MultiWriter(writers...)
	}
	return reply{}, true
}

// abort gives the message up: nothing of it is stored.
func (in *incoming) abort() {
	in.d.abort()
	in.removeSpool()
}

// removeSpool deletes the filter's spool file, if there is one.
func (in *incoming) removeSpool() {
	if in.sp != nil {
		in.sp.remove()
		in.sp = nil
	}
}

// finishMessage stores the message whose data has all been received
// (err == nil) or could not be (err), and returns the reply to the end of
// its data: in LMTP, one per recipient (lmtp.go).
func (s *session) finishMessage(in *incoming, m *Message, err error) reply {
	r := s.settle(in, m, err)
	if !s.srv.set.lmtp || r.close {
		return r
	}
	return s.replyEachRecipient(in.refused, r)
}

// settle stores the message, or gives it up, and returns the reply for its
// recipients.
func (s *session) settle(in *incoming, m *Message, err error) reply {
	defer in.removeSpool()
	if err == nil && in.strict != nil && in.strict.found {
		in.d.abort()
		s.srv.stats.rejected.Add(1)
		return replyBareLFData
	}
	if err == nil {
		if err = in.stored.Close(); err != nil {
			err = &sinkError{err}
		}
	}
	if err != nil {
		in.d.abort()
		return s.dataFailure(m, err)
	}
	if r, ok := s.dataEndFaults(in, m); ok {
		in.d.abort() // a fault's answer: nothing is stored
		return r
	}
	if in.filter != nil {
		if r, ok := s.filter(in.filter, m, in.sp, in.d); !ok {
			in.d.abort()
			return r
		}
	}
	if m.Paths, err = in.d.commit(); err != nil {
		s.srv.stats.failed.Add(1)
		s.logger().Error("smtpd: delivery failed", "queue_id", m.ID, "err", err)
		return replyLocalError
	}
	if in.kept != nil {
		m.Data = in.kept.Bytes()
	}
	s.log.delivered(m)
	s.junk = 0 // progress
	s.srv.accepted(m)
	return replyQueued(m.ID)
}

// dataEndFaults asks the fault plan about the end of the message data. In
// SMTP a rule answers for the whole message; in LMTP, for each recipient,
// and those it refuses are taken out of the delivery (lmtp.go). It returns
// the reply, and true, when the message must not be stored at all.
func (s *session) dataEndFaults(in *incoming, m *Message) (reply, bool) {
	if s.srv.set.lmtp {
		return s.recipientFaults(in, m)
	}
	return s.fault(FaultDataEnd, m.To...)
}
