package smtpd_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocsAgree checks statements that several documents make, so that
// they cannot drift apart again: what an idle session costs (README.md,
// SECURITY.md and Config.MaxConns in smtp.go, a figure measured with
// internal/cmd/holdprobe), what the trace shows of messages, and where
// message data ends.
func TestDocsAgree(t *testing.T) {
	read := func(name string) string {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	idle := regexp.MustCompile(`about (\d+(?:\.\d+)?) KiB`)
	figures := map[string]string{}
	for _, name := range []string{"README.md", "SECURITY.md", "smtp.go"} {
		m := idle.FindStringSubmatch(read(name))
		if m == nil {
			t.Errorf("%s does not say what an idle session costs (\"about N KiB\")", name)
			continue
		}
		figures[name] = m[1]
	}
	if len(figures) == 3 && (figures["README.md"] != figures["SECURITY.md"] || figures["README.md"] != figures["smtp.go"]) {
		t.Errorf("an idle session costs: %v; the documents must agree", figures)
	}
	if security := read("SECURITY.md"); regexp.MustCompile(`never\s+shows\s+message\s+data`).MatchString(security) {
		t.Error("SECURITY.md says the trace never shows message data; it shows its first lines, and all of it with -trace-body")
	}
	// A client that has ended every line of its session with a bare LF
	// (plain nc) may end its data with <LF>.<LF> (readDataLF in data.go).
	endOfData := regexp.MustCompile(`ends\s+only\s+at|only\s+a\s+dot\s+does\s+not\s+end`)
	for _, name := range []string{"README.md", "SECURITY.md", "doc.go"} {
		for _, m := range endOfData.FindAllString(read(name), -1) {
			t.Errorf("%s: %q: a client that has ended every line with a bare LF may end its data with <LF>.<LF>", name, m)
		}
	}
}

// TestREADMEPackages checks that the README names every Debian package
// .ci/run installs for the tests: a newcomer who installs only the ones the
// README lists sees the others' tests skip, without a word.
func TestREADMEPackages(t *testing.T) {
	ci, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\npackages="(.*?)"`).FindSubmatch(ci)
	if m == nil {
		t.Fatal(`.ci/run has no packages="…" list`)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	install := regexp.MustCompile("`apt-get install\\s+([^`]*)`").FindSubmatch(readme)
	if install == nil {
		t.Fatal("README.md has no `apt-get install …` line")
	}
	listed := strings.Fields(string(install[1]))
	for _, p := range strings.Fields(string(m[1])) {
		if !slices.Contains(listed, p) {
			t.Errorf("README.md's apt-get install line lacks %s, which .ci/run installs", p)
		}
	}
}
