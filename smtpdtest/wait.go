package smtpdtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
)

// deadlineMargin is how long before the test's deadline every wait ends:
// time for the test to fail with the wait's error, and to clean up, before
// go test's timeout panics with nothing but a goroutine dump.
const deadlineMargin = time.Second

// maxListed bounds the messages, or sessions, that an error lists.
const maxListed = 20

// WaitMessages waits until at least n messages have been stored and returns
// them all. If the wait ends first (see WaitTimeout), it returns those that
// arrived and an error that lists them. It wakes on each arrival; it does
// not poll.
func (ts *Server) WaitMessages(ctx context.Context, n int) ([]*smtpd.Message, error) {
	ctx, cancel := ts.bound(ctx)
	defer cancel()
	for {
		msgs, arrival := ts.snapshot()
		if len(msgs) >= n {
			return msgs, nil
		}
		select {
		case <-arrival:
		case <-ctx.Done():
			return msgs, fmt.Errorf("smtpdtest: %d of %d messages arrived (%w)%s", len(msgs), n, context.Cause(ctx), listMessages(msgs))
		}
	}
}

// WaitFor waits until a stored message matches (one that came before the
// call counts too) and returns the first that does. If the wait ends first
// (see WaitTimeout), the error says what it looked for and lists the
// messages that did arrive.
func (ts *Server) WaitFor(ctx context.Context, match Matcher) (*smtpd.Message, error) {
	ctx, cancel := ts.bound(ctx)
	defer cancel()
	for {
		msgs, arrival := ts.snapshot()
		for _, m := range msgs {
			if match.Match(m) {
				return m, nil
			}
		}
		select {
		case <-arrival:
		case <-ctx.Done():
			return nil, fmt.Errorf("smtpdtest: no message %v among the %d that arrived (%w)%s", match, len(msgs), context.Cause(ctx), listMessages(msgs))
		}
	}
}

// ExpectNone checks that no message arrives within the given time, or
// none that matches all of match, and fails tb, listing them, if one has
// arrived (since the server started, or since Reset or Take) or arrives
// meanwhile. It returns as soon as one does; otherwise it waits the whole
// time, so give code that sends mail in the background time to send it,
// and 0 for code that has returned (a stored message is recorded before
// the client gets its reply).
func (ts *Server) ExpectNone(tb testing.TB, within time.Duration, match ...Matcher) {
	tb.Helper()
	want := And(match...)
	ctx, cancel := context.WithTimeout(tb.Context(), within)
	defer cancel()
	ctx, cancelBound := ts.bound(ctx)
	defer cancelBound()
	for {
		msgs, arrival := ts.snapshot()
		var found []*smtpd.Message
		for _, m := range msgs {
			if want.Match(m) {
				found = append(found, m)
			}
		}
		if len(found) > 0 {
			tb.Errorf("smtpdtest: want no message %v, but %d arrived:%s", want, len(found), listMessages(found))
			return
		}
		select {
		case <-arrival:
		case <-ctx.Done():
			return
		}
	}
}

// WaitSessions waits until at least n sessions have ended (since the server
// started, or since Reset) and returns the record of each session, as
// Sessions does. If the wait ends first (see WaitTimeout), the error lists
// the sessions.
func (ts *Server) WaitSessions(ctx context.Context, n int) ([]smtpd.SessionRecord, error) {
	ctx, cancel := ts.bound(ctx)
	defer cancel()
	for {
		logs, ended, arrival := ts.sessionSnapshot()
		if ended >= n {
			return records(logs), nil
		}
		select {
		case <-arrival:
		case <-ctx.Done():
			recs := records(logs)
			return recs, fmt.Errorf("smtpdtest: %d of %d sessions ended (%w)%s", ended, n, context.Cause(ctx), listSessions(recs))
		}
	}
}

// bound returns ctx with the deadline a wait keeps: ctx's own, or the wait
// timeout when ctx has none, and never later than the test's deadline less
// deadlineMargin. The context's cause says which ended the wait.
func (ts *Server) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	var cause error
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(ts.waitTimeout)
		cause = fmt.Errorf("%w: waited %v, the wait timeout (see smtpdtest.WaitTimeout)", context.DeadlineExceeded, ts.waitTimeout)
	}
	if d, ok := testDeadline(ts.tb); ok && d.Add(-deadlineMargin).Before(deadline) {
		deadline = d.Add(-deadlineMargin)
		cause = fmt.Errorf("%w: the test's own deadline (go test -timeout) is near", context.DeadlineExceeded)
	}
	if cause == nil {
		return ctx, func() {}
	}
	return context.WithDeadlineCause(ctx, deadline, cause)
}

// testDeadline returns the deadline of tb, when it is a *testing.T.
func testDeadline(tb testing.TB) (time.Time, bool) {
	if t, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		return t.Deadline()
	}
	return time.Time{}, false
}

// listMessages lists messages for an error, one line each: who sent it, to
// whom, its subject (decoded). It lists maxListed at most, and says how
// many more there are.
func listMessages(msgs []*smtpd.Message) string {
	var b strings.Builder
	for i, m := range msgs[:min(len(msgs), maxListed)] {
		fmt.Fprintf(&b, "\n\t%d. from <%s> to <%s> subject %q", i+1, m.From, strings.Join(m.To, ">, <"), m.DecodedHeader("Subject"))
	}
	more(&b, len(msgs))
	return b.String()
}

// listSessions lists sessions for an error, one line each: the client, how
// the session ended, and each command's verb with the reply code.
func listSessions(recs []smtpd.SessionRecord) string {
	var b strings.Builder
	for i, r := range recs[:min(len(recs), maxListed)] {
		fmt.Fprintf(&b, "\n\t%d. session %s from %v, %v:", i+1, r.ID, r.RemoteAddr, r.End)
		for _, e := range r.Exchanges {
			verb, _, _ := strings.Cut(e.Command, " ")
			if verb != "" {
				verb = strings.ToUpper(verb) + " "
			}
			fmt.Fprintf(&b, " %s%d", verb, e.Code)
		}
	}
	more(&b, len(recs))
	return b.String()
}

// more says how many of n items a list of maxListed left out.
func more(b *strings.Builder, n int) {
	if n > maxListed {
		fmt.Fprintf(b, "\n\t… and %d more", n-maxListed)
	}
}
