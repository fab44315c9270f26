package client

import (
	"bufio"
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
	// without it fails.
	Resume <-chan struct{}
	// Step, if set, is called before each batch of held lines is sent,
	// so that a lesson can go one exchange at a time (a PIPELINING batch
	// is one exchange). An error stops the dialogue.
	Step func() error

	steps []step
}

type step struct {
	line int    // in the dialogue's source, for error messages
	kind string // "C", "R", "S", "CLOSED" or "WAIT"
	data string // text or raw bytes to send
	re   *regexp.Regexp
}

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

// Play runs the dialogue over c. It stops at the first reply that does not
// match and returns an error naming the dialogue line.
func (d *Dialogue) Play(c *Client) error {
	var pending []byte
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if d.Step != nil {
			if err := d.Step(); err != nil {
				return err
			}
		}
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
			err = d.expectReply(c, st, flush)
		case "CLOSED":
			err = d.expectClosed(c, flush)
		case "TLS":
			if err = flush(); err == nil {
				err = c.Handshake()
			}
		case "WAIT":
			err = flush()
			if err == nil && d.Resume == nil {
				err = errors.New("WAIT without a way to resume")
			}
			if err == nil {
				<-d.Resume
			}
		}
		if err != nil {
			return fmt.Errorf("dialogue line %d: %w", st.line, err)
		}
	}
	return flush()
}

func (d *Dialogue) expectReply(c *Client, st step, flush func() error) error {
	if err := flush(); err != nil {
		return err
	}
	r, err := c.ReadReply()
	if err != nil {
		return fmt.Errorf("reading reply for S: %s: %w", st.re, err)
	}
	if !st.re.MatchString(r.String()) {
		return fmt.Errorf("reply %q does not match S: %s", r.String(), strings.TrimPrefix(st.re.String(), "(?m)"))
	}
	return nil
}

func (d *Dialogue) expectClosed(c *Client, flush func() error) error {
	// Writing to a connection the server closed may fail; what matters
	// is what the read sees.
	flush()
	r, err := c.ReadReply()
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		c.record("-- connection closed by server")
		return nil
	case err != nil:
		return fmt.Errorf("waiting for the server to close: %w", err)
	}
	return fmt.Errorf("got reply %q, want the connection closed", r.String())
}
