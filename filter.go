package smtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// A Filter transforms each message after its data is received and before
// it is stored, as Postfix content filters and procmail-style pipes do: to
// add a footer, rewrite a subject, or run a spam or virus scanner.
//
// Filter reads the message from r in the form it would be stored in (the
// server's Return-Path and Received header fields first, LF line endings)
// and writes the message to store instead to w. Returning nil stores what
// was written; a *Rejection refuses the message with 554 5.7.1; any other
// error refuses it for now with 451 4.3.0. A refused message is not stored.
// ctx ends when Config.FilterTimeout passes or the server is closed.
//
// A Filter runs on the goroutine of the session whose message it filters;
// it must be safe for concurrent use by many sessions.
type Filter interface {
	Filter(ctx context.Context, m *Message, r io.Reader, w io.Writer) error
}

// FilterFunc is a Go function used as a Filter.
type FilterFunc func(ctx context.Context, m *Message, r io.Reader, w io.Writer) error

// Filter calls f.
func (f FilterFunc) Filter(ctx context.Context, m *Message, r io.Reader, w io.Writer) error {
	return f(ctx, m, r, w)
}

// Rejection is the error of a Filter that refuses a message for good; its
// Reason follows "554 5.7.1" in the reply.
type Rejection struct {
	Reason string
}

func (r *Rejection) Error() string { return "message rejected: " + r.Reason }

// errFilterOutputTooLarge is the error of a filter whose output went over
// the size limit.
var errFilterOutputTooLarge = errors.New("filter output exceeds the size limit")

// Exit statuses of a CommandFilter with a meaning (sysexits.h).
const (
	exDataErr  = 65 // EX_DATAERR: the message is refused
	exNoPerm   = 77 // EX_NOPERM: the message is refused
	exTempFail = 75 // EX_TEMPFAIL: try again later (as any other status)
)

// CommandFilter is a Filter that runs a program: the message goes to its
// standard input and its standard output is stored. The program is run
// directly, not through a shell: write "sh", "-c", "…" for one.
//
// It finds the envelope in its environment, added to the server's:
// SMTPD_QUEUE_ID, SMTPD_SENDER (empty for the null sender),
// SMTPD_RECIPIENTS (one per line), SMTPD_CLIENT_ADDRESS (the IP address),
// SMTPD_HELO and SMTPD_SIZE (octets of message data).
//
// Exit status 0 stores the output. Status 65 (EX_DATAERR) or 77 (EX_NOPERM)
// refuses the message with 554 5.7.1 and the first line the program wrote
// to its standard error. Status 75 (EX_TEMPFAIL), any other status, a crash
// or a timeout answer 451 4.3.0. On Unix the program runs in a process
// group of its own, which is killed as soon as the program exits (and at the
// timeout, or when the server closes), so that nothing it started outlives
// it (short of leaving the group with setsid): the message never waits for
// a background child, even one holding the output open, and what such a
// child would write later is lost. Elsewhere only the program itself is
// killed, at the timeout. The program is always waited for, so it leaves no
// zombie.
type CommandFilter struct {
	// Args is the program and its arguments.
	Args []string
}

// maxFilterStderr bounds what is kept of a filter's standard error.
const maxFilterStderr = 4096

// Filter runs the program for one message.
func (f CommandFilter) Filter(ctx context.Context, m *Message, r io.Reader, w io.Writer) error {
	if len(f.Args) == 0 {
		return errors.New("filter: no command")
	}
	cmd := exec.CommandContext(ctx, f.Args[0], f.Args[1:]...)
	cmd.Stdin = r
	cmd.Stdout = w
	stderr := &headBuffer{max: maxFilterStderr}
	cmd.Stderr = stderr
	cmd.Env = append(os.Environ(), filterEnv(m)...)
	// A child that left the process group (setsid) and holds the output
	// open must not hold the session: Wait gives up on the pipes after
	// this.
	cmd.WaitDelay = time.Second
	err := runInProcessGroup(cmd)
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("filter %s: %w", f.Args[0], context.Cause(ctx))
	case errors.As(err, &exitErr) && (exitErr.ExitCode() == exDataErr || exitErr.ExitCode() == exNoPerm):
		return &Rejection{Reason: stderr.firstLine()}
	}
	return fmt.Errorf("filter %s: %w: %s", f.Args[0], err, stderr.firstLine())
}

// filterEnv returns the envelope of m as environment variables.
func filterEnv(m *Message) []string {
	return []string{
		"SMTPD_QUEUE_ID=" + m.ID,
		"SMTPD_SENDER=" + m.From,
		"SMTPD_RECIPIENTS=" + strings.Join(m.To, "\n"),
		"SMTPD_CLIENT_ADDRESS=" + strings.Trim(strings.TrimPrefix(addressLiteral(m.RemoteAddr), "[IPv6:"), "[]"),
		"SMTPD_HELO=" + m.Helo,
		"SMTPD_SIZE=" + fmt.Sprint(m.Size),
	}
}

// headBuffer keeps the first max bytes written to it and discards the rest.
type headBuffer struct {
	bytes.Buffer
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - h.Len(); room > 0 {
		h.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// firstLine returns the first non-empty line, made safe to put in a reply.
func (h *headBuffer) firstLine() string {
	for _, line := range strings.Split(h.String(), "\n") {
		if line = replyText(line); line != "" {
			return line
		}
	}
	return ""
}

// limitWriter passes at most limit bytes to w; at the first byte over, it
// calls over and fails.
type limitWriter struct {
	w        io.Writer
	limit    int64
	n        int64
	over     func()
	exceeded bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	l.n += int64(len(p))
	if l.n > l.limit {
		if !l.exceeded {
			l.exceeded = true
			l.over()
		}
		return 0, errFilterOutputTooLarge
	}
	return l.w.Write(p)
}

// activeFilter returns the filter to run, or nil when there is none or it
// is switched off.
func (srv *Server) activeFilter() Filter {
	if srv.set.filter == nil || !srv.filterOn.Load() {
		return nil
	}
	return srv.set.filter
}

// hasFilter reports whether a content filter is configured, so that the
// management protocol can switch it on.
func (srv *Server) hasFilter() bool { return srv.set.filter != nil }

// runFilter filters message m from in to out within FilterTimeout. Output
// over the size limit stops the filter and returns errFilterOutputTooLarge.
func (srv *Server) runFilter(f Filter, m *Message, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithTimeoutCause(srv.ctx, srv.set.filterTimeout, errors.New("timed out"))
	defer cancel()
	lw := &limitWriter{w: out, limit: srv.maxSize.Load(), over: cancel}
	err := f.Filter(ctx, m, in, lw)
	if lw.exceeded {
		return errFilterOutputTooLarge
	}
	return err
}
