package smtpd

import (
	"fmt"
	"strings"
	"testing"
)

// TestSessionLogBound: however long a session, its log holds at most
// maxLogLines lines, and each message's transcript still runs from the
// session's start to the message's own end, with the lines left out
// counted in one summary line.
func TestSessionLogBound(t *testing.T) {
	l := &SessionLog{}
	transaction := func(n int) *Message {
		l.add(KindClient, fmt.Sprintf("MAIL FROM:<m%d@example.net>", n))
		l.add(KindClient, "DATA")
		l.add(KindClient, ".")
		m := &Message{}
		l.delivered(m)
		l.reply(reply{code: 250, text: fmt.Sprintf("queued %d", n)})
		return m
	}
	l.add(KindEvent, "connected")
	early := transaction(0)
	for i := range 5000 {
		l.add(KindClient, fmt.Sprint("NOOP ", i))
	}
	late := transaction(1)
	l.add(KindClient, "QUIT")

	if n := len(l.lines); n > maxLogLines {
		t.Fatalf("the log holds %d lines, more than %d", n, maxLogLines)
	}
	if got, want := l.count(), 1+4+5000+4+1; got != want {
		t.Errorf("count() = %d, want %d", got, want)
	}
	text := func(lines []TranscriptLine) string {
		var b strings.Builder
		for _, line := range lines {
			b.WriteString(line.String() + "\n")
		}
		return b.String()
	}
	// The early message's transaction is in the log's first lines: kept
	// whole, and it ends before the next MAIL, which was left out.
	if got := text(early.Transcript()); !strings.HasPrefix(got, "* connected\nC: MAIL FROM:<m0@example.net>\nC: DATA\nC: .\nS: 250 queued 0\n") ||
		!strings.Contains(got, "lines omitted") {
		t.Errorf("early transcript:\n%.300s", got)
	}
	got := text(late.Transcript())
	if !strings.HasSuffix(got, "C: MAIL FROM:<m1@example.net>\nC: DATA\nC: .\nS: 250 queued 1\nC: QUIT\n") {
		t.Errorf("late transcript ends:\n%s", got[max(0, len(got)-200):])
	}
	var omitted int
	if _, err := fmt.Sscanf(got[strings.Index(got, "* … ")+len("* … "):], "%d lines omitted", &omitted); err != nil {
		t.Fatalf("no summary line: %v", err)
	}
	if kept := len(late.Transcript()) - 1; kept+omitted != l.count() {
		t.Errorf("%d lines kept and %d omitted, but the session had %d", kept, omitted, l.count())
	}
}
