package smtpd

import (
	"errors"
	"fmt"
	"io"
)

// CHUNKING (RFC 3030): a client may send a message as chunks, each
// announced with its size ("BDAT 4096", the last "BDAT 512 LAST"), instead
// of DATA's dot-terminated text. A chunk's octets are read by count, never
// looked at for commands or an end marker, so they may hold anything
// (BINARYMIME); the limits, the durability and the per-recipient replies of
// LMTP are those of DATA (incoming.go).

// chunked is a message being sent with BDAT, from its first chunk to its
// last.
type chunked struct {
	in incoming
	m  *Message
	// failed is set once a chunk has failed: the message is given up
	// (in is aborted), and BDAT is refused until RSET (RFC 3030 §2).
	failed bool
}

// The replies of CHUNKING.
var (
	replySyntaxBDAT = reply{code: 501, enh: "5.5.4", text: "Syntax: BDAT size [LAST]; closing connection", close: true,
		why: "without a size the server cannot tell where the chunk's data ends, and would take it for commands; it hangs up instead", rfc: "RFC 3030 §2"}
	replyBDATNeedsEHLO = reply{code: 503, enh: "5.5.1", text: "Error: BDAT needs EHLO",
		why: "BDAT belongs to the CHUNKING extension, which a client learns of with EHLO; the chunk was read and thrown away", rfc: "RFC 3030 §2; RFC 5321 §4.1.1.1"}
	replyBDATAfterFailure = reply{code: 503, enh: "5.5.1", text: "Error: a previous chunk failed; send RSET",
		why: "a chunk of this message was refused, so the message is lost; the server refuses further chunks until RSET (this one was read and thrown away)", rfc: "RFC 3030 §2"}
	replyDATAAfterBDAT = reply{code: 503, enh: "5.5.1", text: "Error: DATA not allowed after BDAT",
		why: "this message is being sent in chunks: it goes on with BDAT, or RSET abandons it", rfc: "RFC 3030 §3"}
	replyRcptAfterBDAT = reply{code: 503, enh: "5.5.1", text: "Error: RCPT not allowed after BDAT",
		why: "the message's data has begun; recipients come before it", rfc: "RFC 3030 §3; RFC 5321 §3.3"}
	replyBinaryNeedsBDAT = reply{code: 503, enh: "5.5.1", text: "Error: BODY=BINARYMIME needs BDAT, not DATA",
		why: "a binary message cannot be sent as DATA's dot-terminated text: send it with BDAT", rfc: "RFC 3030 §3"}
)

func replyChunkOK(size, total int64) reply {
	return reply{code: 250, enh: "2.0.0", text: fmt.Sprintf("Ok: %s received, %d in all", plural(size, "octet"), total),
		why: "chunk taken; the message goes on with the next BDAT, and ends with BDAT … LAST", rfc: "RFC 3030 §2"}
}

// cmdBDAT takes a chunk of the message (RFC 3030 §2). Whatever the reply,
// the chunk's octets are read first: they follow the command line at once,
// and must never be taken for commands.
func (s *session) cmdBDAT(arg string) reply {
	size, last, err := parseBDAT(arg)
	if err != nil {
		return replySyntaxBDAT
	}
	if r, refused := s.refuseBDAT(); refused {
		return s.skipChunk(size, r)
	}
	c := s.chunks
	if c == nil {
		if r, ok := s.fault(FaultData, s.recipients()...); ok {
			s.chunks = &chunked{failed: true}
			return s.skipChunk(size, r)
		}
		c = &chunked{m: s.newMessage()}
		if r, ok := s.openMessage(c.m, &c.in); !ok {
			c.failed = true
			s.chunks = c
			return s.skipChunk(size, r)
		}
		s.chunks = c
	}
	err = s.readChunk(c, size)
	if err == nil && !last {
		return replyChunkOK(size, c.m.Size)
	}
	if c.in.traced != nil {
		c.in.traced.summarize(c.m.Size, "")
	}
	if !last {
		// A failed chunk: the message is lost; the transaction waits
		// for RSET.
		c.in.abort()
		c.failed = true
		return s.dataFailure(c.m, err)
	}
	s.chunks = nil
	r := s.finishMessage(&c.in, c.m, err)
	s.reset()
	return r
}

// refuseBDAT returns the reply to a BDAT that cannot add to a message now,
// and true.
func (s *session) refuseBDAT() (reply, bool) {
	switch {
	case s.state < stateReady:
		return replyNeedHELO, true
	case !s.esmtp:
		return replyBDATNeedsEHLO, true
	case s.state == stateReady:
		return replyNeedMAIL, true
	case s.state == stateMail:
		return replyNeedRCPT, true
	case s.chunks != nil && s.chunks.failed:
		return replyBDATAfterFailure, true
	}
	return reply{}, false
}

// chunkingRefusesDATA returns the reply to a DATA that CHUNKING rules out,
// and true: during a message sent with BDAT, or for a binary one.
func (s *session) chunkingRefusesDATA() (reply, bool) {
	switch {
	case s.chunks != nil:
		return replyDATAAfterBDAT, true
	case s.params.body == "BINARYMIME":
		return replyBinaryNeedsBDAT, true
	}
	return reply{}, false
}

// readChunk reads a chunk of size octets into the message. Past the size
// limit, or once the store has failed, the chunk is still read to its end,
// and errMessageTooLarge or a *sinkError returned: the session stays in
// step. Any other error is the connection's.
func (s *session) readChunk(c *chunked, size int64) error {
	var sink io.Writer = c.in.data
	tooBig := size > s.srv.maxSize.Load()-c.m.Size
	if tooBig {
		sink = io.Discard
	}
	w := &stickyWriter{w: sink}
	n, err := s.copyChunk(w, size)
	if !tooBig {
		c.m.Size += n
	}
	if n < size {
		// The connection broke: say what came, not what was announced.
		s.event("chunk of %s announced, %d received; %s of message so far", plural(size, "octet"), n, plural(c.m.Size, "octet"))
	} else {
		s.event("chunk of %s; %s of message so far", plural(size, "octet"), plural(c.m.Size, "octet"))
	}
	switch {
	case err != nil:
		return err
	case tooBig:
		return errMessageTooLarge
	case w.err != nil:
		return &sinkError{w.err}
	}
	return nil
}

// skipChunk reads and throws away a chunk the server refuses, then returns
// its reply r.
func (s *session) skipChunk(size int64, r reply) reply {
	if _, err := s.copyChunk(io.Discard, size); err != nil {
		return s.dataFailure(nil, err) // a read error: no message to name
	}
	s.event("chunk of %s read and thrown away", plural(size, "octet"))
	return r
}

// copyChunk copies the next size octets of input to w, each read within
// DataTimeout (and, as every read, after the replies so far are sent), and
// returns how many it copied: fewer than size only with an error.
func (s *session) copyChunk(w io.Writer, size int64) (int64, error) {
	s.inData = true
	n, err := io.CopyN(w, s.br, size)
	s.inData = false
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// dropChunks gives up the message being sent in chunks, if any.
func (s *session) dropChunks() {
	if s.chunks != nil && !s.chunks.failed {
		s.chunks.in.abort()
	}
	s.chunks = nil
}

// stickyWriter writes to w until a write fails; it then keeps the error
// and takes, without writing, whatever comes next, so that its writer
// reads on to the end of what it copies.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (sw *stickyWriter) Write(p []byte) (int, error) {
	if sw.err == nil {
		_, sw.err = sw.w.Write(p)
	}
	return len(p), nil
}
