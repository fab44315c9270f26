package smtpd

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fatih/color"
	"github.com/mattn/go-isatty"
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

func (m ColorMode) String() string {
	if m < 0 || int(m) >= len(colorModeNames) {
		return "ColorMode(" + strconv.Itoa(int(m)) + ")"
	}
	return colorModeNames[m]
}

// ParseColorMode parses "auto", "always" or "never".
func ParseColorMode(s string) (ColorMode, error) {
	for i, name := range colorModeNames {
		if s == name {
			return ColorMode(i), nil
		}
	}
	return ColorAuto, fmt.Errorf("smtpd: color mode %q is not auto, always or never", s)
}

// tracer writes the session trace: one line per protocol line, such as
//
//	14:25:11.123 [7] C: MAIL FROM:<bob@example.net>
//	14:25:11.123 [7] S: 250 2.1.0 Ok
//	14:25:11.125 [7] * connected from 127.0.0.1:53122
//
// Each line is built whole and written with one Write under a mutex, so the
// lines of concurrent sessions never mix. A nil *tracer traces nothing.
type tracer struct {
	w  io.Writer
	on *atomic.Bool // the run-time switch

	mu sync.Mutex
	// Colors are per tracer, never the fatih/color globals, so that two
	// servers in one process can trace differently.
	clientColor, eventColor *color.Color
	replyColor              [6]*color.Color // by reply class: 2xx … 5xx
}

func newTracer(w io.Writer, mode ColorMode, on *atomic.Bool) *tracer {
	if w == nil {
		return nil
	}
	t := &tracer{w: w, on: on}
	t.clientColor = color.New(color.FgCyan)
	t.eventColor = color.New(color.Faint)
	t.replyColor[2] = color.New(color.FgGreen)
	t.replyColor[3] = color.New(color.FgBlue)
	t.replyColor[4] = color.New(color.FgYellow)
	t.replyColor[5] = color.New(color.FgRed, color.Bold)
	colored := mode == ColorAlways || mode == ColorAuto && isTerminal(w) && os.Getenv("NO_COLOR") == ""
	for _, c := range []*color.Color{t.clientColor, t.eventColor, t.replyColor[2], t.replyColor[3], t.replyColor[4], t.replyColor[5]} {
		if colored {
			c.EnableColor()
		} else {
			c.DisableColor()
		}
	}
	return t
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

func (t *tracer) enabled() bool { return t != nil && t.on.Load() }

// client traces a line the client sent. Control characters are shown
// escaped: a client must not be able to drive the teacher's terminal.
func (t *tracer) client(id, line string) {
	if t.enabled() {
		t.write(id, t.clientColor.Sprint("C: "+visible(line)))
	}
}

// data traces the message data of a DATA command, summarised.
func (t *tracer) data(id string, size int64) {
	if t.enabled() {
		t.write(id, t.clientColor.Sprintf("C: <message data: %d octets>", size))
	}
}

// server traces a reply, one trace line per reply line.
func (t *tracer) server(id string, r reply) {
	if !t.enabled() {
		return
	}
	c := t.replyColor[min(max(r.code/100, 2), 5)]
	for _, line := range strings.Split(r.String(), "\n") {
		t.write(id, c.Sprint("S: "+line))
	}
}

// event traces something that is not a protocol line.
func (t *tracer) event(id, format string, args ...any) {
	if t.enabled() {
		t.write(id, t.eventColor.Sprint("* "+fmt.Sprintf(format, args...)))
	}
}

func (t *tracer) write(id, text string) {
	b := make([]byte, 0, 32+len(text))
	b = time.Now().AppendFormat(b, "15:04:05.000")
	b = append(b, " ["...)
	b = append(b, id...)
	b = append(b, "] "...)
	b = append(b, text...)
	b = append(b, '\n')
	t.mu.Lock()
	t.w.Write(b)
	t.mu.Unlock()
}

// visible returns s with control characters and invalid UTF-8 escaped.
func visible(s string) string {
	if printable(s) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}
