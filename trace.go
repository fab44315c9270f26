package smtpd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/tpe-protos/smtpd/internal/palette"
)

// ColorMode says when the session trace uses ANSI colors.
type ColorMode int

const (
	// ColorAuto colors the trace when Config.Trace is a terminal and the
	// NO_COLOR environment variable is unset or empty.
	ColorAuto ColorMode = iota
	// ColorAlways colors the trace whatever it is written to.
	ColorAlways
	// ColorNever never colors the trace.
	ColorNever
)

var colorModeNames = [...]string{"auto", "always", "never"}

// String returns "auto", "always" or "never", as the smtpd command's -color
// flag spells them.
func (m ColorMode) String() string {
	if m < 0 || int(m) >= len(colorModeNames) {
		return "ColorMode(" + strconv.Itoa(int(m)) + ")"
	}
	return colorModeNames[m]
}

// tracer writes the session trace: one line per protocol line, such as
//
//	14:25:11.123 [7] C: MAIL FROM:<bob@example.net>
//	14:25:11.123 [7] S: 250 2.1.0 Ok
//	14:25:11.123 [7]    ↳ sender accepted: a mail transaction has begun; …
//	14:25:11.125 [7] * connected from 127.0.0.1:53122
//
// Each line is built whole and written with one Write under a mutex, so the
// lines of concurrent sessions never mix. The lines also go to the HTTP
// view's live trace while a browser watches it, with explanations whether
// or not the terminal gets them. A nil *tracer traces nothing.
type tracer struct {
	w       io.Writer    // nil: only the HTTP view's live trace
	on      *atomic.Bool // the run-time switch of w
	live    *eventHub    // the HTTP view's event stream
	explain bool         // follow each reply with its explanation
	body    bool         // trace message data whole, not summarised
	pal     *palette.Palette

	mu sync.Mutex
}

func newTracer(c *Config, on *atomic.Bool, live *eventHub) *tracer {
	colored := c.Trace != nil && (c.TraceColor == ColorAlways ||
		c.TraceColor == ColorAuto && isTerminal(c.Trace) && os.Getenv("NO_COLOR") == "")
	return &tracer{w: c.Trace, on: on, live: live, explain: c.Explain, body: c.TraceBody, pal: palette.New(colored)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

func (t *tracer) enabled() bool { return t != nil && (t.toTerminal() || t.live.tracing()) }

// toTerminal reports whether lines go to Config.Trace now.
func (t *tracer) toTerminal() bool { return t.w != nil && t.on.Load() }

// client traces a line the client sent. Control characters are shown
// escaped: a client must not be able to drive the teacher's terminal.
func (t *tracer) client(id, line string) {
	if t.enabled() {
		t.write(id, t.pal.Client.Sprint("C: "+visible(line)))
	}
}

// server traces a reply, one trace line per reply line, and in explain mode
// a line saying what it means.
func (t *tracer) server(id string, r reply) {
	if !t.enabled() {
		return
	}
	c := t.pal.ForReply(r.code)
	for _, line := range strings.Split(r.String(), "\n") {
		t.write(id, c.Sprint("S: "+line))
	}
	if r.why != "" && (t.explain || t.live.tracing()) {
		t.emit(id, t.pal.Explain.Sprint("   ↳ "+r.explanation()), t.explain)
	}
}

// event traces something that is not a protocol line.
func (t *tracer) event(id, format string, args ...any) {
	if t.enabled() {
		t.write(id, t.pal.Event.Sprint("* "+fmt.Sprintf(format, args...)))
	}
}

func (t *tracer) write(id, text string) { t.emit(id, text, true) }

// emit writes a trace line to Config.Trace, if terminal is set and the
// trace is on there, and to the HTTP view's live trace. An id of "" is a
// line of the server as a whole.
func (t *tracer) emit(id, text string, terminal bool) {
	now := time.Now()
	t.live.traceLine(now, id, text)
	if !terminal {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Checked under the lock: no line of a session that looked before
	// the trace was turned off may follow "trace off" (turn).
	if t.toTerminal() {
		t.writeLocked(now, id, text)
	}
}

func (t *tracer) writeLocked(now time.Time, id, text string) {
	b := make([]byte, 0, 32+len(text))
	b = now.AppendFormat(b, "15:04:05.000")
	if id != "" {
		b = append(b, " ["...)
		b = append(b, id...)
		b = append(b, ']')
	}
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, '\n')
	t.w.Write(b)
}

// turn switches the trace on or off, and marks the change in it, saying
// why: "* trace off (why)" is the last line before the trace goes quiet,
// and "* trace on (why)" the first when it comes back, so that a gap in a
// projected trace is explained. Switching to the state in force writes
// nothing.
func (t *tracer) turn(on bool, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on.Load() == on {
		return
	}
	if !on && t.w != nil {
		t.writeLocked(time.Now(), "", t.pal.Event.Sprint("* trace off ("+why+")"))
	}
	t.on.Store(on)
	if on && t.w != nil {
		t.writeLocked(time.Now(), "", t.pal.Event.Sprint("* trace on ("+why+")"))
	}
}

// visible returns s with control characters and invalid UTF-8 escaped.
func visible(s string) string {
	if printable(s) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// How much of a message the trace shows when it summarises.
const (
	shownBodyLines = 3
	maxShownLine   = 200
)

// messageTrace returns a writer that traces the message data written to it
// (its wire form, dot-stuffing undone), or nil when the trace is off.
func (t *tracer) messageTrace(id string) *bodyTrace {
	if !t.enabled() {
		return nil
	}
	return &bodyTrace{t: t, id: id}
}

// bodyTrace traces message data line by line as it arrives: the first
// lines, or all of them with TraceBody, each as the client sent it (a line
// that starts with a dot shown stuffed), then a summary.
type bodyTrace struct {
	t         *tracer
	id        string
	line      []byte // the start of the current line
	truncated bool   // the current line is longer than what is kept
	lines     int
	hinted    bool // said that a lone "." after a bare LF ends nothing
}

func (b *bodyTrace) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			b.keep(p)
			break
		}
		b.keep(p[:i])
		b.endLine()
		p = p[i+1:]
	}
	return n, nil
}

func (b *bodyTrace) keep(p []byte) {
	room := maxShownLine - len(b.line)
	if len(p) > room {
		p = p[:max(room, 0)]
		b.truncated = true
	}
	b.line = append(b.line, p...)
}

func (b *bodyTrace) endLine() {
	b.lines++
	if string(b.line) == "." && !b.hinted {
		// What a class typing into plain nc sends to end a message.
		b.hinted = true
		b.t.event(b.id, "a line with only a dot, ended by a bare LF, does not end the message: only CR LF . CR LF does (RFC 5321 §4.1.1.4); use nc -C or telnet")
	}
	if b.t.body || b.lines <= shownBodyLines {
		line := strings.TrimSuffix(string(b.line), "\r")
		if strings.HasPrefix(line, ".") {
			line = "." + line
		}
		if b.truncated {
			line += "…"
		}
		b.t.client(b.id, line)
	}
	b.line, b.truncated = b.line[:0], false
}

// end traces the summary and, when the client sent it (ended), the
// end-of-data line. A last line the client did not end is traced as it came.
func (b *bodyTrace) end(size int64, ended bool) {
	note := ""
	if !ended {
		note = ", without the end-of-data line"
	}
	b.summarize(size, note)
	if ended {
		b.t.client(b.id, ".")
	}
}

// summarize traces the last line, if the client did not end it, and the
// summary of the message data, note appended. A message sent in BDAT
// chunks, which has no end-of-data line, ends with it.
func (b *bodyTrace) summarize(size int64, note string) {
	if len(b.line) > 0 || b.truncated {
		b.endLine()
	}
	summary := "message data: " + plural(size, "octet") + " in " + plural(int64(b.lines), "line")
	if hidden := b.lines - shownBodyLines; hidden > 0 && !b.t.body {
		summary += fmt.Sprintf(", %d not shown (-trace-body shows them)", hidden)
	}
	b.t.event(b.id, "%s", summary+note)
}

// plural returns n and noun, in the plural unless n is 1: "1 line",
// "2 lines". The trace is read aloud in class.
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.FormatInt(n, 10) + " " + noun + "s"
}
