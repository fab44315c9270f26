package client

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// A Dialogue is a scripted SMTP conversation, written one step per line:
//
//	# a comment; blank lines are ignored too
//	C: EHLO client.test      send the text and CRLF ("C:" alone sends an empty line)
//	R: "body\n.\r\n"         send Go-quoted raw bytes, nothing added
//	S: ^250 2\.1\.0          read one reply and match it against a regexp
//	CLOSED                   expect the server to close the connection
//	WAIT                     send what is held, then wait for Resume
//	TLS                      send what is held, then start TLS (after STARTTLS's 220)
//
// Lines to send are held until the next S: or CLOSED step and then written
// at once, so a run of C: lines followed by as many S: lines is a PIPELINING
// batch (RFC 2920). An S: regexp is matched against the whole reply, its
// lines joined by "\n", in multi-line mode: ^ and $ match at each line.
type Dialogue struct {
	// Resume is received from at each WAIT step, so that a test can
	// make something happen at an exact point of the dialogue. A WAIT
	// without it (or Wait) fails.
	Resume <-chan struct{}
	// Wait, if set, is called at each WAIT step instead of receiving
	// from Resume, so that several dialogues can wait for each other
	// (all connected at once, say). An error stops the dialogue.
	Wait func() error
	// Step, if set, is called before each batch of held lines is sent,
	// so that a lesson can go one exchange at a time (a PIPELINING batch
	// is one exchange). An error stops the dialogue.
	Step func() error
	// Name, if set, names the dialogue's file in the errors of Play
	// ("send.dialog line 4: …" instead of "dialogue line 4: …").
	Name string

	steps []step
}

type step struct {
	line   int    // in the dialogue's source, for error messages
	source string // the Name of the dialogue the step came from
	kind   string // "C", "R", "S", "CLOSED" or "WAIT"
	data   string // text or raw bytes to send
	re     *regexp.Regexp
}

// text returns the step as it was written, for errors.
func (st step) text() string {
	switch st.kind {
	case "C":
		return "C: " + strings.TrimSuffix(st.data, "\r\n")
	case "R":
		return "R: " + strconv.Quote(st.data)
	case "S":
		return "S: " + strings.TrimPrefix(st.re.String(), "(?m)")
	}
	return st.kind
}

// Append adds the steps of more after those of d, so that a dialogue kept
// in several files (a generated message between a head and a tail) plays
// as one. Errors in the steps of more name more's file.
func (d *Dialogue) Append(more *Dialogue) {
	for _, st := range more.steps {
		if st.source == "" {
			st.source = more.Name
		}
		d.steps = append(d.steps, st)
	}
}

// A StepError is a dialogue step that did not go as written. Play returns
// one, so that a program checking a server can show the exchange that
// failed: what was sent, what was expected and what came.
type StepError struct {
	// Source names the dialogue's file ("" when it has no Name), and
	// Line the step's line in it.
	Source string
	Line   int
	// Step is the step as written, such as "S: ^250".
	Step string
	// Command is the command line the expected reply answers: "" for
	// the greeting, "." for the end of message data. It is set only for
	// S: and CLOSED steps.
	Command string
	// Reply is the reply that came instead, its lines joined by "\n",
	// or "" when none did.
	Reply string
	// Err says what went wrong: a mismatch, a timeout, a lost
	// connection.
	Err error
}

func (e *StepError) Error() string {
	source := e.Source
	if source == "" {
		source = "dialogue"
	}
	return fmt.Sprintf("%s line %d: %v", source, e.Line, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// ParseDialogue reads a dialogue.
func ParseDialogue(r io.Reader) (*Dialogue, error) {
	d := &Dialogue{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20) // a dialogue may send a long raw line
	n := 1
	for ; sc.Scan(); n++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		st, err := parseStep(text)
		if err != nil {
			return nil, fmt.Errorf("dialogue line %d: %w", n, err)
		}
		st.line = n
		d.steps = append(d.steps, st)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dialogue line %d: %w", n, err)
	}
	return d, nil
}

func parseStep(text string) (step, error) {
	if text == "CLOSED" || text == "WAIT" || text == "TLS" {
		return step{kind: text}, nil
	}
	kind, arg, ok := strings.Cut(text, ":")
	if !ok {
		return step{}, fmt.Errorf("%q is not C:, R:, S:, CLOSED, WAIT or TLS", text)
	}
	arg = strings.TrimPrefix(arg, " ")
	switch kind {
	case "C":
		return step{kind: kind, data: arg + "\r\n"}, nil
	case "R":
		raw, err := strconv.Unquote(arg)
		if err != nil {
			return step{}, fmt.Errorf("an R: step wants a Go-quoted string: %w", err)
		}
		return step{kind: kind, data: raw}, nil
	case "S":
		re, err := regexp.Compile("(?m)" + arg)
		if err != nil {
			return step{}, err
		}
		return step{kind: kind, re: re}, nil
	}
	return step{}, fmt.Errorf("%q is not C:, R:, S:, CLOSED, WAIT or TLS", text)
}

// Play runs the dialogue over c. It stops at the first step that does not
// go as written and returns a *StepError naming its line.
func (d *Dialogue) Play(c *Client) error {
	var pending []byte
	answers := &answered{lines: []string{""}} // the greeting answers the connection
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if d.Step != nil {
			if err := d.Step(); err != nil {
				return err
			}
		}
		answers.sent(pending)
		err := c.write(pending)
		pending = pending[:0]
		return err
	}
	for _, st := range d.steps {
		var err error
		switch st.kind {
		case "C":
			c.record("C: " + strings.TrimSuffix(st.data, "\r\n"))
			pending = append(pending, st.data...)
		case "R":
			c.recordRaw([]byte(st.data))
			pending = append(pending, st.data...)
		case "S":
			err = d.expectReply(c, st, flush, answers)
		case "CLOSED":
			err = d.expectClosed(c, flush, answers)
		case "TLS":
			if err = flush(); err == nil {
				err = c.Handshake()
			}
		case "WAIT":
			err = flush()
			switch {
			case err != nil:
			case d.Wait != nil:
				err = d.Wait()
			case d.Resume == nil:
				err = errors.New("WAIT without a way to resume")
			default:
				<-d.Resume
			}
		}
		if err != nil {
			se, ok := err.(*StepError)
			if !ok {
				se = &StepError{Err: err}
			}
			se.Source, se.Line, se.Step = cmp.Or(st.source, d.Name), st.line, st.text()
			return se
		}
	}
	return flush()
}

func (d *Dialogue) expectReply(c *Client, st step, flush func() error, answers *answered) error {
	err := flush()
	command := answers.next()
	if err != nil {
		return &StepError{Command: command, Err: err}
	}
	r, err := c.ReadReply()
	if err != nil {
		return &StepError{Command: command, Err: fmt.Errorf("reading reply for S: %s: %w", st.re, err)}
	}
	answers.replied(r.Code)
	if !st.re.MatchString(r.String()) {
		return &StepError{Command: command, Reply: r.String(),
			Err: fmt.Errorf("reply %q does not match S: %s", r.String(), strings.TrimPrefix(st.re.String(), "(?m)"))}
	}
	return nil
}

func (d *Dialogue) expectClosed(c *Client, flush func() error, answers *answered) error {
	// Writing to a connection the server closed may fail; what matters
	// is what the read sees.
	flush()
	command := answers.next()
	r, err := c.ReadReply()
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		c.record("-- connection closed by server")
		return nil
	case err != nil:
		return &StepError{Command: command, Err: fmt.Errorf("waiting for the server to close: %w", err)}
	}
	return &StepError{Command: command, Reply: r.String(), Err: fmt.Errorf("got reply %q, want the connection closed", r.String())}
}

// answered follows which command line each reply answers: replies come in
// the order of the commands (RFC 2920 §3.1), the greeting answers the
// connection, and after a 354 the lines up to the one holding a lone dot
// are message data, answered as one by the reply to the dot.
type answered struct {
	lines   []string // sent and not yet answered, oldest first
	partial string   // the start of a line whose CRLF was not sent yet
	inData  bool     // the last reply was 354
}

// sent notes the bytes of one write.
func (a *answered) sent(b []byte) {
	text := a.partial + string(b)
	for {
		line, rest, ok := strings.Cut(text, "\r\n")
		if !ok {
			a.partial = text
			return
		}
		a.lines = append(a.lines, line)
		text = rest
	}
}

// next returns the command line the next reply answers.
func (a *answered) next() string {
	if a.inData {
		a.inData = false
		for len(a.lines) > 0 {
			line := a.lines[0]
			a.lines = a.lines[1:]
			if line == "." {
				return "."
			}
		}
		return "."
	}
	if len(a.lines) == 0 {
		return ""
	}
	line := a.lines[0]
	a.lines = a.lines[1:]
	return line
}

// replied notes the code of the reply just read.
func (a *answered) replied(code int) { a.inData = code == 354 }
