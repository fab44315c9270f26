package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// errMessageTooLarge is returned by readData once it has consumed a message
// that went over the size limit.
var errMessageTooLarge = errors.New("message exceeds the size limit")

// sinkError wraps an error returned by the writer readData copies into (the
// Maildir file). The message was consumed to its end; the session answers
// 451 and stays in sync.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return "storing message: " + e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// crOnly is the CR that readData must emit on its own when a line ".<CR>x"
// turns out not to be the end of the data.
var crOnly = []byte{'\r'}

// dataState is a state of readData's end-of-data recogniser.
type dataState int

const (
	stateBeginLine dataState = iota // at the start of a line: after CRLF, or at the very start
	stateDot                        // a '.' began the line; dropped unless it is the end marker
	stateDotCR                      // ".<CR>" began the line; <LF> next ends the data
	stateData                       // inside a line
	stateCR                         // just after a CR inside the data
)

// readData reads the message data of a DATA command from br, up to and
// including the end-of-data line, undoes dot-stuffing (RFC 5321 §4.5.2) and
// writes the message to w in its wire form (CRLF line endings kept). It
// returns the message size in octets.
//
// Only <CRLF>.<CRLF> ends the data; the CRLF that starts the data (after
// "354") counts. A bare LF or a bare CR is an ordinary data byte and does not
// start a new line, so sequences such as <LF>.<LF>, <LF>.<CRLF> or
// <CR>.<CR> can never end the message: that is what keeps a second,
// smuggled message from being read as SMTP commands (the "SMTP smuggling"
// attacks of 2023; the same choice as go-smtp PRs #244/#246 and chasquid).
//
// When the message goes over limit octets, or w fails, readData keeps reading
// and discarding up to the end-of-data line before it returns
// errMessageTooLarge or a *sinkError: stopping early would make the rest of
// the message be read as commands. Any other error comes from br: the
// connection is broken (EOF, timeout) and the session must end.
func readData(br *bufio.Reader, w io.Writer, limit int64) (int64, error) {
	var (
		state   = stateBeginLine
		size    int64
		tooBig  bool
		sinkErr error
	)
	emit := func(b []byte) {
		if len(b) == 0 {
			return
		}
		size += int64(len(b))
		if size > limit {
			tooBig = true
		}
		if tooBig || sinkErr != nil {
			return
		}
		if _, err := w.Write(b); err != nil {
			sinkErr = err
		}
	}
	for {
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return size, err
		}
		buf, _ := br.Peek(br.Buffered())
		run := 0 // start of the bytes of buf not yet emitted
		i := 0
		for i < len(buf) {
			c := buf[i]
			switch state {
			case stateData:
				// Fast path: pass over data in bulk (see
				// skipData).
				i, state = skipData(buf, i)
				continue
			case stateCR:
				switch c {
				case '\n':
					state = stateBeginLine
				case '\r':
					// another CR: the previous one was bare
				default:
					state = stateData
				}
			case stateBeginLine:
				switch c {
				case '.':
					emit(buf[run:i])
					run = i + 1 // drop the dot
					state = stateDot
				case '\r':
					state = stateCR
				default:
					state = stateData
				}
			case stateDot:
				if c == '\r' {
					run = i + 1 // hold the CR back until the next byte decides
					state = stateDotCR
				} else {
					// A stuffed line; even ".<LF>" is one, since a bare
					// LF is data and the line goes on.
					state = stateData
				}
			case stateDotCR:
				if c == '\n' {
					// <CRLF>.<CRLF>: the end of the data.
					br.Discard(i + 1)
					switch {
					case tooBig:
						return size, errMessageTooLarge
					case sinkErr != nil:
						return size, &sinkError{sinkErr}
					}
					return size, nil
				}
				// ".<CR>x" is a stuffed line after all: emit the CR held back.
				emit(crOnly)
				run = i
				state = stateCR
				if c != '\r' {
					state = stateData
				}
			}
			i++
		}
		emit(buf[run:])
		br.Discard(len(buf))
	}
}

// skipData is readData's fast path inside a line, from buf[i] on. Only a dot
// that starts a line, after a CRLF, means anything (stuffing, or the end
// marker); every other byte, bare CRs and LFs included, is data. So skipData
// first looks for a dot, in bulk: a base64 attachment, most of a large
// message, holds none, and is passed over whole. A dot inside a line means
// text, where dots are common: from there it goes on line by line
// (skipLines). It returns where the state machine must take over, and its
// state there.
//
// In stateData the byte before buf[i] is not a CR, so a CRLF before a dot
// lies within buf[i:].
func skipData(buf []byte, i int) (int, dataState) {
	j := bytes.IndexByte(buf[i:], '.')
	if j < 0 {
		return len(buf), endState(buf[i:])
	}
	dot := i + j
	if j >= 2 && buf[dot-2] == '\r' && buf[dot-1] == '\n' {
		return dot, stateBeginLine
	}
	if next, atCR := skipLines(buf, dot+1); atCR {
		return next, stateCR
	}
	return len(buf), stateData
}

// endState is the state after data that was entered in stateData and holds
// no dot: what its last bytes leave.
func endState(data []byte) dataState {
	n := len(data)
	switch {
	case n >= 2 && data[n-2] == '\r' && data[n-1] == '\n':
		return stateBeginLine
	case n >= 1 && data[n-1] == '\r':
		return stateCR
	}
	return stateData
}

// skipLines is readData's fast path through text: from buf[i] on, in
// stateData, it skips the bytes up to the next CR, and whole lines after it
// as long as each CRLF is followed by a byte other than '.' and CR. Such a
// line start changes nothing (the recogniser would go from CR to line start
// to data again), so text is scanned one IndexByte per line, without a step
// of the state machine per line end. It returns the index after the CR where
// the state machine must take over, and true; or len(buf) and false when
// buf ends inside a line.
func skipLines(buf []byte, i int) (int, bool) {
	for {
		j := bytes.IndexByte(buf[i:], '\r')
		if j < 0 {
			return len(buf), false
		}
		i += j + 1 // past the CR
		if i+1 >= len(buf) || buf[i] != '\n' || buf[i+1] == '.' || buf[i+1] == '\r' {
			return i, true
		}
		i += 2 // the LF and the first byte of an ordinary line
	}
}
