// Package check runs smtpcheck's suite against an SMTP server. A case is a
// testscript script written with the commands of package smtpscript (it
// plays dialogues against $SMTP_ADDR), tagged with a level; the built-in
// ones are embedded, and a teacher adds more from a directory.
package check

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Levels are the case levels, in the order of the report: what a first
// SMTP assignment asks, RFC 5321 and its extensions in detail, hostile and
// broken input, and STARTTLS.
var Levels = []string{"basic", "rfc", "robustness", "tls"}

// Case is one case of the suite.
type Case struct {
	Name  string // the file name without .txtar: "greeting"
	Level string // one of Levels
	// Title is the first line of the script's opening comment: what
	// the case checks, in one sentence.
	Title string
	// Why, from a "# why:" line, says which rule a failure breaks and
	// where it is written, for the cases whose failing reply does not
	// tell (a smuggled command answered where QUIT's 221 was due).
	Why  string
	Data []byte // the txtar script
}

// ID names the case with its level, as -list shows it and -run matches it.
func (c Case) ID() string { return c.Level + "/" + c.Name }

//go:embed cases/*.txtar
var builtin embed.FS

// Builtin returns the built-in cases, by level and then by name.
func Builtin() []Case {
	cases, err := load(builtin, "cases")
	if err != nil {
		panic(err) // the cases are checked by the package's tests
	}
	return cases
}

// Load reads the cases (*.txtar) of a directory.
func Load(dir string) ([]Case, error) {
	cases, err := load(os.DirFS(dir), ".")
	if err == nil && len(cases) == 0 {
		err = fmt.Errorf("no .txtar case in %s", dir)
	}
	return cases, err
}

func load(fsys fs.FS, dir string) ([]Case, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.txtar"))
	if err != nil {
		return nil, err
	}
	var cases []Case
	for _, name := range names {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		c, err := parseCase(strings.TrimSuffix(path.Base(name), ".txtar"), data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.FromSlash(name), err)
		}
		cases = append(cases, c)
	}
	sortCases(cases)
	return cases, nil
}

var caseName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// parseCase reads a case's header: its opening comment, whose first line
// is the title, with a "# level: LEVEL" line and maybe a "# why: …" line.
func parseCase(name string, data []byte) (Case, error) {
	c := Case{Name: name, Data: data}
	if !caseName.MatchString(name) {
		return c, fmt.Errorf("a case name is lower-case letters, digits, _ and -")
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "#")
		if !ok {
			break
		}
		line = strings.TrimSpace(line)
		switch {
		case c.Title == "":
			c.Title = line
		case strings.HasPrefix(line, "level:"):
			c.Level = strings.TrimSpace(strings.TrimPrefix(line, "level:"))
		case strings.HasPrefix(line, "why:"):
			c.Why = strings.TrimSpace(strings.TrimPrefix(line, "why:"))
		}
	}
	switch {
	case c.Title == "":
		return c, fmt.Errorf("no title: the script must begin with a # line saying what it checks")
	case !slices.Contains(Levels, c.Level):
		return c, fmt.Errorf("level %q: want a \"# level:\" line naming one of %s", c.Level, strings.Join(Levels, ", "))
	}
	return c, nil
}

func sortCases(cases []Case) {
	slices.SortFunc(cases, func(a, b Case) int {
		if d := slices.Index(Levels, a.Level) - slices.Index(Levels, b.Level); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// Merge returns the cases of base and extra; a case of extra replaces the
// case of base with its name.
func Merge(base, extra []Case) []Case {
	var out []Case
	for _, c := range base {
		if !slices.ContainsFunc(extra, func(e Case) bool { return e.Name == c.Name }) {
			out = append(out, c)
		}
	}
	out = append(out, extra...)
	sortCases(out)
	return out
}

// Select returns the cases whose ID matches run (nil: all) and not skip
// (nil: none).
func Select(cases []Case, run, skip *regexp.Regexp) []Case {
	var out []Case
	for _, c := range cases {
		if (run == nil || run.MatchString(c.ID())) && (skip == nil || !skip.MatchString(c.ID())) {
			out = append(out, c)
		}
	}
	return out
}
