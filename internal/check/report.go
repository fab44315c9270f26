package check

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fatih/color"

	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/internal/palette"
)

// Tally counts results, in all and by level.
type Tally struct {
	Passed, Failed, Skipped int
	byLevel                 map[string]*Tally
}

// Add counts a result.
func (t *Tally) Add(res Result) {
	if t.byLevel == nil {
		t.byLevel = make(map[string]*Tally)
	}
	level := t.byLevel[res.Level]
	if level == nil {
		level = &Tally{}
		t.byLevel[res.Level] = level
	}
	for _, c := range []*Tally{t, level} {
		switch res.Outcome {
		case Pass:
			c.Passed++
		case Fail:
			c.Failed++
		default:
			c.Skipped++
		}
	}
}

// Level returns the counts of one level.
func (t *Tally) Level(name string) Tally {
	if c := t.byLevel[name]; c != nil {
		return *c
	}
	return Tally{}
}

// The text report shows the end of a failed case's transcript, enough
// for the exchange that failed: transcriptTail lines, each cut to
// transcriptWidth characters.
const (
	transcriptTail  = 12
	transcriptWidth = 160
)

// TextReport writes one line per case as results come, with the exchange
// that failed under a failure, and a summary at the end.
type TextReport struct {
	w     io.Writer
	on    bool // colors
	pal   *palette.Palette
	tally Tally
}

// NewTextReport returns a report written to w, in colors if on.
func NewTextReport(w io.Writer, on bool) *TextReport {
	return &TextReport{w: w, on: on, pal: palette.New(on)}
}

// Add writes a result.
func (r *TextReport) Add(res Result) {
	r.tally.Add(res)
	word := map[string]*color.Color{Pass: r.pal.Reply[2], Fail: r.pal.Reply[5], Skip: r.pal.Reply[4]}[res.Outcome]
	line := fmt.Sprintf("%s  %-34s %s", word.Sprint(strings.ToUpper(res.Outcome)), res.ID(), res.Title)
	if res.Outcome == Skip {
		line += r.pal.Event.Sprintf(" (%s)", res.Reason)
	}
	fmt.Fprintln(r.w, line)
	if res.Outcome == Fail {
		r.failure(res)
	}
}

// failure writes what went wrong in a failed case.
func (r *TextReport) failure(res Result) {
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(r.w, "      %-9s %s\n", name+":", value)
		}
	}
	if s := res.Step; s != nil {
		field("sent", describeCommand(s.Command))
		field("expected", s.Expected)
		field("got", strings.ReplaceAll(s.Got, "\n", "\n                "))
		field("why", s.Why)
	} else if res.Why != "" {
		field("why", res.Why)
	}
	field("reason", res.Reason)
	lines := strings.Split(strings.TrimSuffix(res.Transcript, "\n"), "\n")
	if res.Transcript == "" {
		return
	}
	if len(lines) > transcriptTail {
		lines = append([]string{"…"}, lines[len(lines)-transcriptTail:]...)
	}
	var colored bytes.Buffer
	ct := client.ColorTranscript(&colored, r.on)
	for _, l := range lines {
		if len(l) > transcriptWidth {
			l = fmt.Sprintf("%s… (%d more octets)", strings.ToValidUTF8(l[:transcriptWidth], ""), len(l)-transcriptWidth)
		}
		fmt.Fprintln(ct, l)
	}
	for _, l := range strings.SplitAfter(colored.String(), "\n") {
		if l != "" {
			fmt.Fprint(r.w, "        "+l)
		}
	}
}

// describeCommand names the command a reply answers.
func describeCommand(command string) string {
	switch command {
	case "":
		return "(the connection: the greeting is due)"
	case ".":
		return ". (the end of the message data)"
	}
	if len(command) > 100 {
		return fmt.Sprintf("%s… (%d octets)", command[:100], len(command))
	}
	return command
}

// Close writes the summary: a score per level, then the totals.
func (r *TextReport) Close() {
	fmt.Fprintln(r.w)
	for _, level := range Levels {
		c := r.tally.Level(level)
		score := "   -"
		if ran := c.Passed + c.Failed; ran > 0 {
			score = fmt.Sprintf("%3d%%", c.Passed*100/ran)
		}
		line := fmt.Sprintf("%-11s %3d of %3d passed  %s", level, c.Passed, c.Passed+c.Failed, score)
		if c.Skipped > 0 {
			line += fmt.Sprintf("  (%d skipped)", c.Skipped)
		}
		fmt.Fprintln(r.w, line)
	}
	t := r.tally
	passed, failed := fmt.Sprintf("%d passed", t.Passed), fmt.Sprintf("%d failed", t.Failed)
	if t.Failed > 0 {
		failed = r.pal.Reply[5].Sprint(failed)
	} else if t.Passed > 0 {
		passed = r.pal.Reply[2].Sprint(passed)
	}
	fmt.Fprintf(r.w, "%s, %s, %d skipped\n", passed, failed, t.Skipped)
}

// jsonResult is a result as -json writes it, one object per line.
type jsonResult struct {
	Name       string  `json:"name"`
	Level      string  `json:"level"`
	Title      string  `json:"title"`
	Result     string  `json:"result"`
	Reason     string  `json:"reason"`
	Step       *Step   `json:"step,omitempty"`
	Transcript string  `json:"transcript"`
	Seconds    float64 `json:"seconds"`
}

// WriteJSON writes a result as one line of JSON.
func WriteJSON(w io.Writer, res Result) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(jsonResult{Name: res.Name, Level: res.Level, Title: res.Title,
		Result: res.Outcome, Reason: res.Reason, Step: res.Step, Transcript: res.Transcript,
		Seconds: res.Duration.Seconds()})
}

// The JUnit XML format, as Jenkins, GitLab and GitHub Classroom read it:
// one testsuite per level.
type (
	junitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Skipped  int          `xml:"skipped,attr"`
		Time     string       `xml:"time,attr"`
		Suites   []junitSuite `xml:"testsuite"`
	}
	junitSuite struct {
		Name     string      `xml:"name,attr"`
		Tests    int         `xml:"tests,attr"`
		Failures int         `xml:"failures,attr"`
		Skipped  int         `xml:"skipped,attr"`
		Time     string      `xml:"time,attr"`
		Cases    []junitCase `xml:"testcase"`
	}
	junitCase struct {
		Name      string        `xml:"name,attr"`
		ClassName string        `xml:"classname,attr"`
		Time      string        `xml:"time,attr"`
		Failure   *junitMessage `xml:"failure,omitempty"`
		Skipped   *junitMessage `xml:"skipped,omitempty"`
		SystemOut string        `xml:"system-out,omitempty"`
	}
	junitMessage struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	}
)

// WriteJUnit writes the results as a JUnit XML report.
func WriteJUnit(w io.Writer, results []Result) error {
	all := junitSuites{Name: "smtpcheck"}
	var total time.Duration
	for _, level := range Levels {
		suite := junitSuite{Name: level}
		var d time.Duration
		for _, res := range results {
			if res.Level != level {
				continue
			}
			suite.Cases = append(suite.Cases, junitCaseOf(res))
			suite.Tests++
			d += res.Duration
			switch res.Outcome {
			case Fail:
				suite.Failures++
			case Skip:
				suite.Skipped++
			}
		}
		if suite.Tests == 0 {
			continue
		}
		suite.Time = seconds(d)
		total += d
		all.Tests += suite.Tests
		all.Failures += suite.Failures
		all.Skipped += suite.Skipped
		all.Suites = append(all.Suites, suite)
	}
	all.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(all); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func junitCaseOf(res Result) junitCase {
	jc := junitCase{Name: res.Name, ClassName: "smtpcheck." + res.Level, Time: seconds(res.Duration), SystemOut: res.Transcript}
	switch res.Outcome {
	case Fail:
		var text strings.Builder
		if s := res.Step; s != nil {
			fmt.Fprintf(&text, "sent:     %s\nexpected: %s\ngot:      %s\nwhy:      %s\n", describeCommand(s.Command), s.Expected, s.Got, s.Why)
		}
		jc.Failure = &junitMessage{Message: res.Title + ": " + res.Reason, Text: text.String()}
	case Skip:
		jc.Skipped = &junitMessage{Message: res.Reason}
	}
	return jc
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
