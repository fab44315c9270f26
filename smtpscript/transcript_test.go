package smtpscript

import (
	"fmt"
	"strings"
	"testing"
)

// TestCappedTranscript checks the bound on a transcript: the start and
// the end are kept (a dialogue fails at its end), the middle is counted,
// and a long line is cut.
func TestCappedTranscript(t *testing.T) {
	var tr cappedTranscript
	for i := range 5000 {
		fmt.Fprintf(&tr, "C: line %d %s\n", i, strings.Repeat("x", 40))
	}
	fmt.Fprintf(&tr, "S: %s\n", strings.Repeat("y", 5000))
	got := tr.String()
	if len(got) > transcriptCap+100 {
		t.Errorf("transcript of %d octets, want at most about %d", len(got), transcriptCap)
	}
	for _, want := range []string{"C: line 0 x", "C: line 4999 x", " octets of transcript not shown\n", "y… (3980 more octets)\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	if !strings.HasPrefix(got, "C: line 0 ") || !strings.HasSuffix(got, "(3980 more octets)\n") {
		t.Errorf("transcript does not keep its start and end:\n%.80s…%s", got, got[len(got)-80:])
	}

	var short cappedTranscript
	fmt.Fprint(&short, "S: 220 hi\nC: QUIT\n")
	if short.String() != "S: 220 hi\nC: QUIT\n" {
		t.Errorf("a short transcript became %q", short.String())
	}
}
