package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMenuLongLine: the menu is robust to bad input (docs/metrics-protocol.md
// §9). A line too long to be a number is bad input like any other: it is
// refused and the question asked again, rather than taken for the end of
// input (which ends the menu silently, exit status 0, ignoring what follows).
func TestMenuLongLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "metrics.key"), []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1000, 70000} {
		stdin := strings.NewReader(strings.Repeat("x", n) + "\n0\n")
		var stdout, stderr bytes.Buffer
		// No server is needed: nothing is sent before the choice 0.
		code := MetricsClient(t.Context(), []string{"-d", dir, "-M", "9"}, stdin, &stdout, &stderr)
		out := stdout.String()
		if code != 0 || stderr.Len() > 0 {
			t.Errorf("line of %d octets: exit %d, stderr %q", n, code, stderr.String())
		}
		if got := strings.Count(out, "Choose an option (0-13): "); !strings.Contains(out, "is not a number.") || got != 2 {
			t.Errorf("line of %d octets: %d prompts, output ends %q; want it refused and the question asked again", n, got, out[max(0, len(out)-200):])
		}
	}
}
