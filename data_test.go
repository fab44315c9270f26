package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// next is what the client sends after the end of the data in the tests: the
// reader must be left exactly at its start.
const next = "QUIT\r\n"

func TestReadData(t *testing.T) {
	tests := []struct {
		name    string
		input   string // the data after "354", end-of-data line included
		limit   int64
		want    string // what reaches the writer, when wantErr is nil
		wantErr error
	}{
		// The empty message.
		{name: "empty", input: ".\r\n", limit: 100, want: ""},
		{name: "empty line only", input: "\r\n.\r\n", limit: 100, want: "\r\n"},

		// Simple messages: CRLF line endings are kept.
		{name: "one line", input: "hello\r\n.\r\n", limit: 100, want: "hello\r\n"},
		{name: "headers and body", input: "Subject: x\r\n\r\nbody\r\n.\r\n", limit: 100, want: "Subject: x\r\n\r\nbody\r\n"},
		{name: "8-bit data", input: "caf\xc3\xa9 \xff\x00\r\n.\r\n", limit: 100, want: "caf\xc3\xa9 \xff\x00\r\n"},
		{name: "blank lines", input: "a\r\n\r\n\r\nb\r\n.\r\n", limit: 100, want: "a\r\n\r\n\r\nb\r\n"},

		// Dot-stuffing is undone at the start of a line only.
		{name: "stuffed dot", input: "..x\r\n.\r\n", limit: 100, want: ".x\r\n"},
		{name: "stuffed lone dot", input: "a\r\n..\r\n.\r\n", limit: 100, want: "a\r\n.\r\n"},
		{name: "unstuffed leading dot dropped", input: ".x\r\n.\r\n", limit: 100, want: "x\r\n"},
		{name: "three dots", input: "...\r\n.\r\n", limit: 100, want: "..\r\n"},
		{name: "dot mid-line kept", input: "a.b\r\n.\r\n", limit: 100, want: "a.b\r\n"},
		{name: "dot at line end kept", input: "a.\r\n.\r\n", limit: 100, want: "a.\r\n"},
		{name: "dot line then text", input: "a\r\n.b\r\n.\r\n", limit: 100, want: "a\r\nb\r\n"},
		{name: "dot before bare LF is stuffing", input: "a\r\n.\nb\r\n.\r\n", limit: 100, want: "a\r\n\nb\r\n"},
		{name: "dot CR then text", input: "a\r\n.\rb\r\n.\r\n", limit: 100, want: "a\r\n\rb\r\n"},
		{name: "dot CR at start", input: ".\rx\r\n.\r\n", limit: 100, want: "\rx\r\n"},
		{name: "dot CR CR LF", input: "a\r\n.\r\r\n.\r\n", limit: 100, want: "a\r\n\r\r\n"},
		{name: "dot CR CR dot", input: ".\r\r.\r\n.\r\n", limit: 100, want: "\r\r.\r\n"},

		// SMTP smuggling: none of these end the data.
		{name: "LF dot LF", input: "a\n.\nMAIL FROM:<e@v>\r\n.\r\n", limit: 100, want: "a\n.\nMAIL FROM:<e@v>\r\n"},
		{name: "LF dot CRLF", input: "a\n.\r\nMAIL FROM:<e@v>\r\n.\r\n", limit: 100, want: "a\n.\r\nMAIL FROM:<e@v>\r\n"},
		{name: "CR dot CR", input: "a\r.\rMAIL FROM:<e@v>\r\n.\r\n", limit: 100, want: "a\r.\rMAIL FROM:<e@v>\r\n"},
		{name: "CR dot CRLF", input: "a\r.\r\nMAIL FROM:<e@v>\r\n.\r\n", limit: 100, want: "a\r.\r\nMAIL FROM:<e@v>\r\n"},
		{name: "CRLF dot LF", input: "a\r\n.\nMAIL FROM:<e@v>\r\n.\r\n", limit: 100, want: "a\r\n\nMAIL FROM:<e@v>\r\n"},
		{name: "CRLF dot CR x", input: "a\r\n.\rMAIL FROM:<e@v>\r\n.\r\n", limit: 100, want: "a\r\n\rMAIL FROM:<e@v>\r\n"},
		{name: "dot CR x at the start", input: ".\rMAIL FROM:<e@v>\r\n.\r\n", limit: 100, want: "\rMAIL FROM:<e@v>\r\n"},
		{name: "dot LF at the start", input: ".\nMAIL FROM:<e@v>\r\n.\r\n", limit: 100, want: "\nMAIL FROM:<e@v>\r\n"},
		{name: "LF dot LF at the start", input: "\n.\nx\r\n.\r\n", limit: 100, want: "\n.\nx\r\n"},
		{name: "CR CR LF dot CR LF", input: "a\r\r\n.\r\n", limit: 100, want: "a\r\r\n"},
		{name: "LF CR LF dot CRLF ends", input: "a\n\r\n.\r\n", limit: 100, want: "a\n\r\n"},
		{name: "CR LF LF dot LF", input: "a\r\n\n.\nb\r\n.\r\n", limit: 100, want: "a\r\n\n.\nb\r\n"},
		{name: "LF dot LF dot CRLF", input: "a\n.\n.\r\nb\r\n.\r\n", limit: 100, want: "a\n.\n.\r\nb\r\n"},
		{name: "CR dot CR LF after CRLF", input: "a\r\n\r.\r\nb\r\n.\r\n", limit: 100, want: "a\r\n\r.\r\nb\r\n"},
		{name: "dot space CRLF", input: "a\r\n. \r\n.\r\n", limit: 100, want: "a\r\n \r\n"},
		{name: "NUL dot CRLF", input: "a\r\n\x00.\r\n.\r\n", limit: 100, want: "a\r\n\x00.\r\n"},

		// Bare CR and bare LF are data.
		{name: "bare LF", input: "a\nb\r\n.\r\n", limit: 100, want: "a\nb\r\n"},
		{name: "bare CR", input: "a\rb\r\n.\r\n", limit: 100, want: "a\rb\r\n"},
		{name: "CR CR", input: "a\r\r\r\n.\r\n", limit: 100, want: "a\r\r\r\n"},
		{name: "LF only lines", input: "a\n\n\nb\r\n.\r\n", limit: 100, want: "a\n\n\nb\r\n"},
		{name: "LF CR", input: "a\n\rb\r\n.\r\n", limit: 100, want: "a\n\rb\r\n"},
		{name: "bare CR at the start", input: "\rx\r\n.\r\n", limit: 100, want: "\rx\r\n"},
		{name: "bare LF at the start", input: "\nx\r\n.\r\n", limit: 100, want: "\nx\r\n"},

		// The size limit counts the unstuffed message with its CRLFs.
		{name: "exactly at the limit", input: "abc\r\n.\r\n", limit: 5, want: "abc\r\n"},
		{name: "one over the limit", input: "abcd\r\n.\r\n", limit: 5, wantErr: errMessageTooLarge},
		{name: "stuffing dot not counted", input: "..ab\r\n.\r\n", limit: 5, want: ".ab\r\n"},
		{name: "empty message with zero limit", input: ".\r\n", limit: 0, want: ""},
		{name: "one byte with zero limit", input: "a\r\n.\r\n", limit: 0, wantErr: errMessageTooLarge},
		{name: "far over the limit", input: strings.Repeat("0123456789\r\n", 100) + ".\r\n", limit: 10, wantErr: errMessageTooLarge},
		{name: "over the limit with smuggling", input: strings.Repeat("x", 20) + "\n.\nQUIT\r\n\r\n.\r\n", limit: 10, wantErr: errMessageTooLarge},
		{name: "held CR over the limit", input: "abcd\r\n.\rx\r\n.\r\n", limit: 6, wantErr: errMessageTooLarge},
		{name: "held CR at the limit", input: "abcd\r\n.\r\r\n.\r\n", limit: 9, want: "abcd\r\n\r\r\n"},

		// The connection ends inside the message.
		{name: "EOF at once", input: "", limit: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "EOF mid-line", input: "abc", limit: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "EOF after CRLF", input: "abc\r\n", limit: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "EOF after dot", input: "abc\r\n.", limit: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "EOF after dot CR", input: "abc\r\n.\r", limit: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "EOF after LF dot LF", input: "abc\n.\n", limit: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "EOF after LF dot CRLF", input: "abc\n.\r\n", limit: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "EOF over the limit", input: "abcdefgh", limit: 2, wantErr: io.ErrUnexpectedEOF},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) *bufio.Reader
	}{
		{"default", func(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }},
		{"size16", func(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 16) }},
		{"onebyte", func(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(iotest.OneByteReader(r), 16) }},
		{"halfreader", func(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(iotest.HalfReader(r), 16) }},
	}
	for _, tc := range tests {
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				input := tc.input
				if tc.wantErr != io.ErrUnexpectedEOF {
					input += next
				}
				br := rd.wrap(strings.NewReader(input))
				var out bytes.Buffer
				size, err := readData(br, &out, tc.limit)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("readData(%q, limit %d) error = %v, want %v", tc.input, tc.limit, err, tc.wantErr)
				}
				switch tc.wantErr {
				case nil:
					if out.String() != tc.want {
						t.Errorf("readData(%q) wrote %q, want %q", tc.input, out.String(), tc.want)
					}
					if size != int64(len(tc.want)) {
						t.Errorf("readData(%q) size = %d, want %d", tc.input, size, len(tc.want))
					}
				case errMessageTooLarge:
					if size <= tc.limit {
						t.Errorf("readData(%q) size = %d, want over the limit %d", tc.input, size, tc.limit)
					}
					if int64(out.Len()) > tc.limit {
						t.Errorf("readData(%q) wrote %d octets, over the limit %d", tc.input, out.Len(), tc.limit)
					}
				}
				if tc.wantErr != io.ErrUnexpectedEOF {
					rest, _ := io.ReadAll(br)
					if string(rest) != next {
						t.Errorf("after readData(%q) the stream holds %q, want %q", tc.input, rest, next)
					}
				}
			})
		}
	}
}

// failingWriter fails every write after the first n bytes.
type failingWriter struct {
	n      int
	writes int // calls made after the failure
	buf    bytes.Buffer
}

var errDiskFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.n {
		w.writes++
		return 0, errDiskFull
	}
	return w.buf.Write(p)
}

func TestReadDataSinkError(t *testing.T) {
	tests := []struct {
		name     string
		input    string
		failFrom int
		wantSize int64
	}{
		{name: "first write", input: "hello\r\n.\r\n", failFrom: 0, wantSize: 7},
		{name: "later write", input: strings.Repeat("line of text\r\n", 50) + ".\r\n", failFrom: 100, wantSize: 14 * 50},
		{name: "with smuggling after", input: strings.Repeat("x", 40) + "\n.\r\nMAIL FROM:<e@v>\r\n.\r\n", failFrom: 10, wantSize: 40 + 4 + 17},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.input+next), 16)
			w := &failingWriter{n: tc.failFrom}
			size, err := readData(br, w, 1<<20)
			var sinkErr *sinkError
			if !errors.As(err, &sinkErr) {
				t.Fatalf("readData error = %v (%T), want a *sinkError", err, err)
			}
			if !errors.Is(err, errDiskFull) {
				t.Errorf("readData error = %v, want it to wrap %v", err, errDiskFull)
			}
			if w.writes != 1 {
				t.Errorf("writer called %d times after failing, want 1", w.writes)
			}
			if size != tc.wantSize {
				t.Errorf("size = %d, want %d", size, tc.wantSize)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != next {
				t.Errorf("after the failure the stream holds %q, want %q", rest, next)
			}
		})
	}
}

// TestReadDataTooLargeAndSinkError checks that a message both over the limit
// and failing to store reports the size problem, which is the client's.
func TestReadDataTooLargeAndSinkError(t *testing.T) {
	br := bufio.NewReader(strings.NewReader(strings.Repeat("x", 100) + "\r\n.\r\n" + next))
	_, err := readData(br, &failingWriter{n: 0}, 50)
	if !errors.Is(err, errMessageTooLarge) {
		t.Fatalf("readData error = %v, want %v", err, errMessageTooLarge)
	}
}

// TestReadDataReadError checks that an error from the connection other than
// EOF comes back as it is.
func TestReadDataReadError(t *testing.T) {
	errBroken := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader("abc\r\n"), iotest.ErrReader(errBroken))
	_, err := readData(bufio.NewReader(r), io.Discard, 100)
	if !errors.Is(err, errBroken) {
		t.Fatalf("readData error = %v, want %v", err, errBroken)
	}
}

// TestReadDataPipelined reads two messages sent back to back, as a
// PIPELINING client may, from one reader.
func TestReadDataPipelined(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("one\r\n.\r\n..two\n.\n\r\n.\r\nRSET\r\n"), 16)
	var out bytes.Buffer
	if _, err := readData(br, &out, 100); err != nil || out.String() != "one\r\n" {
		t.Fatalf("first message = %q, %v; want %q, nil", out.String(), err, "one\r\n")
	}
	out.Reset()
	if _, err := readData(br, &out, 100); err != nil || out.String() != ".two\n.\n\r\n" {
		t.Fatalf("second message = %q, %v; want %q, nil", out.String(), err, ".two\n.\n\r\n")
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "RSET\r\n" {
		t.Errorf("stream holds %q, want %q", rest, "RSET\r\n")
	}
}

// TestReadDataBulk runs readData's fast paths (skipData, skipLines) over
// long stretches without a dot, text with dots inside lines, stuffed lines
// and line ends falling on every buffer boundary, against naiveReadData.
func TestReadDataBulk(t *testing.T) {
	b64 := strings.Repeat(strings.Repeat("QUJD", 19)+"\r\n", 200)
	text := strings.Repeat("A sentence. Another, e.g. this one.\r\n", 100)
	inputs := map[string]string{
		"base64":         b64 + ".\r\n",
		"text":           text + ".\r\n",
		"mixed":          text + b64 + "..stuffed\r\n" + b64 + ".\r\nQUIT\r\n",
		"stuffed":        strings.Repeat("..\r\n.x\r\nx.\r\n", 300) + ".\r\n",
		"bare":           strings.Repeat("a\r.\rb\n.\nc\r\r\n.d\r\n", 200) + ".\r\n",
		"dot at the end": b64 + "x.\r\n.\r\n",
	}
	for name, input := range inputs {
		want, wantRest, _ := naiveReadData([]byte(input))
		for size := 16; size <= 80; size++ {
			br := bufio.NewReaderSize(strings.NewReader(input), size)
			var out bytes.Buffer
			n, err := readData(br, &out, 1<<20)
			rest, _ := io.ReadAll(br)
			if err != nil || n != int64(len(want)) || !bytes.Equal(out.Bytes(), want) || !bytes.Equal(rest, wantRest) {
				t.Fatalf("%s, buffer %d: readData = %d, %v, rest %q; want %d, nil, rest %q (output equal: %v)",
					name, size, n, err, rest, len(want), wantRest, bytes.Equal(out.Bytes(), want))
			}
		}
	}
}

// naiveReadData is the reference decoder of FuzzReadData, written for
// obviousness rather than speed: the data ends at the first "\r\n.\r\n",
// counting the start as if it followed a "\r\n"; its lines are what lies
// between CRLFs, and each loses one leading dot. It returns the message, the
// input after the end-of-data line, and whether the end was found.
func naiveReadData(input []byte) (msg, rest []byte, ok bool) {
	s := append([]byte("\r\n"), input...)
	end := bytes.Index(s, []byte("\r\n.\r\n"))
	if end < 0 {
		return nil, nil, false
	}
	body := s[2 : end+2] // the CRLF before the dot belongs to the message
	lines := bytes.Split(body, []byte("\r\n"))
	for i, line := range lines {
		lines[i] = bytes.TrimPrefix(line, []byte("."))
	}
	return bytes.Join(lines, []byte("\r\n")), s[end+5:], true
}

func FuzzReadData(f *testing.F) {
	for _, s := range []string{
		".\r\n",
		"hello\r\n.\r\n",
		"..x\r\n.x\r\n.\r\n",
		"a\n.\nMAIL FROM:<e@v>\r\n.\r\n",
		"a\n.\r\nMAIL FROM:<e@v>\r\n.\r\n",
		"a\r.\rMAIL FROM:<e@v>\r\n.\r\n",
		"a\r\n.\nb\r\n.\r\n",
		"a\r\n.\rb\r\n.\r\nQUIT\r\n",
		".\rx\r\n.\r\n",
		"a\r\n.\r\r\n.\r\n",
		"abc\r\n.",
		"\r\n.\r\n\r\n.\r\n",
	} {
		f.Add([]byte(s), uint16(1000), uint8(16))
	}
	f.Fuzz(func(t *testing.T, input []byte, limit16 uint16, bufSize uint8) {
		limit := int64(limit16)
		wantMsg, wantRest, ok := naiveReadData(input)

		check := func(name string, br *bufio.Reader) {
			var out bytes.Buffer
			size, err := readData(br, &out, limit)
			rest, _ := io.ReadAll(br)
			switch {
			case !ok:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("%s: readData(%q) error = %v, want %v", name, input, err, io.ErrUnexpectedEOF)
				}
				return
			case int64(len(wantMsg)) > limit:
				if err != errMessageTooLarge {
					t.Fatalf("%s: readData(%q, limit %d) error = %v, want %v", name, input, limit, err, errMessageTooLarge)
				}
			case err != nil:
				t.Fatalf("%s: readData(%q, limit %d) error = %v, want nil", name, input, limit, err)
			case !bytes.Equal(out.Bytes(), wantMsg):
				t.Fatalf("%s: readData(%q) wrote %q, want %q", name, input, out.Bytes(), wantMsg)
			}
			if size != int64(len(wantMsg)) {
				t.Fatalf("%s: readData(%q) size = %d, want %d", name, input, size, len(wantMsg))
			}
			if !bytes.Equal(rest, wantRest) {
				t.Fatalf("%s: after readData(%q) the stream holds %q, want %q", name, input, rest, wantRest)
			}
			// Independently of the reference: what was consumed ends at
			// the first <CRLF>.<CRLF>, and at nothing earlier.
			consumed := append([]byte("\r\n"), input[:len(input)-len(rest)]...)
			if i := bytes.Index(consumed, []byte("\r\n.\r\n")); i != len(consumed)-5 {
				t.Fatalf("%s: readData(%q) consumed %q, which does not end at the first <CRLF>.<CRLF>", name, input, consumed[2:])
			}
		}
		check("default", bufio.NewReader(bytes.NewReader(input)))
		check("sized", bufio.NewReaderSize(bytes.NewReader(input), 16+int(bufSize)))
		check("onebyte", bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(input)), 16))
	})
}

// naiveReadDataLF is the reference decoder of FuzzReadDataLF: lines end at
// LF and lose one leading dot; a line ".\n" ends the data; after a line that
// ends in CR LF, the rest is naiveReadData's.
func naiveReadDataLF(input []byte) (msg, rest []byte, lfEnd, ok bool) {
	for len(input) > 0 {
		i := bytes.IndexByte(input, '\n')
		if i < 0 {
			return nil, nil, false, false
		}
		line := input[:i+1]
		input = input[i+1:]
		if string(line) == ".\n" {
			return msg, input, true, true
		}
		msg = append(msg, bytes.TrimPrefix(line, []byte("."))...)
		if bytes.HasSuffix(line, []byte("\r\n")) {
			more, rest, ok := naiveReadData(input)
			return append(msg, more...), rest, false, ok
		}
	}
	return nil, nil, false, false
}

func TestReadDataLF(t *testing.T) {
	tests := []struct {
		name, input, want string
		lfEnd             bool
	}{
		{"lone dot", ".\n", "", true},
		{"lines", "Subject: x\n\nbody\n.\n", "Subject: x\n\nbody\n", true},
		{"stuffing", "..a\n.b\n...\n.\n", ".a\nb\n..\n", true},
		{"bare CR is data", "a\rb\n.\rc\n.\n", "a\rb\n\rc\n", true},
		{"CRLF ends it", "a\n.\r\n.\r\n", "a\n\r\n", false},
		{"after a CRLF line, LF dot LF is data", "a\r\nb\n.\nc\r\n.\r\n", "a\r\nb\n.\nc\r\n", false},
		{"a CRLF first line", "Subject: x\r\n\n.\n\r\n.\r\n", "Subject: x\r\n\n.\n\r\n", false},
		{"dot in a line", "a.\n. b\n.\n", "a.\n b\n", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.input+next), 16)
			var out bytes.Buffer
			size, lfEnd, err := readDataLF(br, &out, 100)
			if err != nil || out.String() != tc.want || size != int64(len(tc.want)) || lfEnd != tc.lfEnd {
				t.Errorf("readDataLF(%q) = %q (%d octets), LF end %v, %v; want %q, %v", tc.input, out.String(), size, lfEnd, err, tc.want, tc.lfEnd)
			}
			if rest, _ := io.ReadAll(br); string(rest) != next {
				t.Errorf("the stream holds %q after it, want %q", rest, next)
			}
		})
	}
	// Too large, read to its end all the same; and a line longer than the
	// buffer whose start is a stuffed dot.
	br := bufio.NewReaderSize(strings.NewReader(".."+strings.Repeat("x", 40)+"\n.\n"+next), 16)
	var out bytes.Buffer
	if _, _, err := readDataLF(br, &out, 10); err != errMessageTooLarge {
		t.Errorf("over the limit: %v, want %v", err, errMessageTooLarge)
	}
	if rest, _ := io.ReadAll(br); string(rest) != next {
		t.Errorf("over the limit: the stream holds %q after it", rest)
	}
}

func FuzzReadDataLF(f *testing.F) {
	for _, s := range []string{".\n", "a\n..b\n.\n", "a\r\nb\n.\nc\r\n.\r\n", "a\n.\r\n.\n.\r\n", "abc\n."} {
		f.Add([]byte(s), uint16(1000), uint8(0))
	}
	f.Fuzz(func(t *testing.T, input []byte, limit16 uint16, bufSize uint8) {
		limit := int64(limit16)
		wantMsg, wantRest, wantLF, ok := naiveReadDataLF(input)
		br := bufio.NewReaderSize(bytes.NewReader(input), 16+int(bufSize))
		var out bytes.Buffer
		size, lfEnd, err := readDataLF(br, &out, limit)
		rest, _ := io.ReadAll(br)
		switch {
		case !ok:
			if err != io.ErrUnexpectedEOF {
				t.Fatalf("readDataLF(%q) error = %v, want %v", input, err, io.ErrUnexpectedEOF)
			}
			return
		case int64(len(wantMsg)) > limit:
			if err != errMessageTooLarge {
				t.Fatalf("readDataLF(%q, limit %d) error = %v, want %v", input, limit, err, errMessageTooLarge)
			}
		case err != nil || !bytes.Equal(out.Bytes(), wantMsg):
			t.Fatalf("readDataLF(%q) wrote %q, %v; want %q", input, out.Bytes(), err, wantMsg)
		}
		if size != int64(len(wantMsg)) || lfEnd != wantLF || !bytes.Equal(rest, wantRest) {
			t.Fatalf("readDataLF(%q): size %d, LF end %v, rest %q; want %d, %v, %q", input, size, lfEnd, rest, len(wantMsg), wantLF, wantRest)
		}
	})
}
