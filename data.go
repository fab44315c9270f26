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
	return readDataInto(br, &dataSink{w: w, limit: limit})
}

// dataSink is where readData puts the message: it counts the octets and
// writes them to w, until the message goes over limit or w fails; from then
// on it only counts, so that the data is read to its end all the same.
type dataSink struct {
	w      io.Writer
	limit  int64
	size   int64
	tooBig bool
	err    error // w's
}

func (d *dataSink) emit(b []byte) {
	if len(b) == 0 {
		return
	}
	d.size += int64(len(b))
	if d.size > d.limit {
		d.tooBig = true
	}
	if d.tooBig || d.err != nil {
		return
	}
	if _, err := d.w.Write(b); err != nil {
		d.err = err
	}
}

// end returns what readData returns once the end-of-data line was read.
func (d *dataSink) end() (int64, error) {
	switch {
	case d.tooBig:
		return d.size, errMessageTooLarge
	case d.err != nil:
		return d.size, &sinkError{d.err}
	}
	return d.size, nil
}

// readDataInto is readData into d, from the start of a line.
func readDataInto(br *bufio.Reader, d *dataSink) (int64, error) {
	state := stateBeginLine
	for {
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return d.size, err
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
					d.emit(buf[run:i])
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
					return d.end()
				}
				// ".<CR>x" is a stuffed line after all: emit the CR held back.
				d.emit(crOnly)
				run = i
				state = stateCR
				if c != '\r' {
					state = stateData
				}
			}
			i++
		}
		d.emit(buf[run:])
		br.Discard(len(buf))
	}
}

// readDataLF is readData for a client that has ended every line of the
// session with a bare LF, as plain nc does with a file written on Unix
// (cat mail.txt | nc): for it a line with only a dot and a bare LF ends the
// data too, and it reports whether that is how the data ended. Such a
// client calls LF the end of a line, and stuffs dots (if it does) by that
// rule, so <LF>.<LF> is its end of data and hides no second message: SMTP
// smuggling needs a relay whose lines end in CR LF while the message it
// passes on holds <LF>.<LF>, and a relay's command lines end in CR LF. So
// once the client ends a line of the data with CR LF, only <CRLF>.<CRLF>
// ends the data, as in readData.
func readDataLF(br *bufio.Reader, w io.Writer, limit int64) (size int64, lfEnd bool, err error) {
	d := &dataSink{w: w, limit: limit}
	lineStart := true
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: its start is data.
			d.emit(unstuff(line, lineStart))
			lineStart = false
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return d.size, false, err
		}
		if lineStart && string(line) == ".\n" {
			size, err := d.end()
			return size, true, err
		}
		d.emit(unstuff(line, lineStart))
		lineStart = true
		if bytes.HasSuffix(line, crlf) {
			size, err := readDataInto(br, d)
			return size, false, err
		}
	}
}

// unstuff drops the dot a client adds to a line that starts with one
// (RFC 5321 §4.5.2), when b is the start of a line.
func unstuff(b []byte, lineStart bool) []byte {
	if lineStart && len(b) > 0 && b[0] == '.' {
		return b[1:]
	}
	return b
}

var crlf = []byte("\r\n")

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
