package check

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestBuiltinCases checks the suite itself: at least 40 cases, each level
// present, every case with a title and a level, the ten smuggling
// variants.
func TestBuiltinCases(t *testing.T) {
	cases := Builtin()
	if len(cases) < 40 {
		t.Errorf("%d built-in cases, want at least 40", len(cases))
	}
	var t2 Tally
	for _, c := range cases {
		t2.Add(Result{Case: c, Outcome: Pass})
		if !strings.HasSuffix(c.Title, ".") {
			t.Errorf("%s: the title %q is not a sentence", c.ID(), c.Title)
		}
	}
	for _, level := range Levels {
		if t2.Level(level).Passed == 0 {
			t.Errorf("no case at level %s", level)
		}
	}
	smuggling := Select(cases, regexp.MustCompile(`^robustness/smuggle_`), nil)
	if len(smuggling) != 10 {
		t.Errorf("%d smuggling cases, want the ten variants", len(smuggling))
	}
}

// TestLoadCases checks -cases: a directory's cases join the built-in ones,
// replace those of the same name, and a case without a level is refused
// with its file name.
func TestLoadCases(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	write("greeting.txtar", "# A stricter greeting.\n# level: basic\nsmtp g.dialog\n-- g.dialog --\nS: ^220 \n")
	write("extra.txtar", "# An extra case.\n# level: rfc\n# why: a reason (RFC 1 §1)\nsmtp g.dialog\n-- g.dialog --\nS: ^220\n")
	write("notes.txt", "not a case")
	extra, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	all := Merge(Builtin(), extra)
	if len(all) != len(Builtin())+1 {
		t.Errorf("merged %d cases, want %d", len(all), len(Builtin())+1)
	}
	i := slices.IndexFunc(all, func(c Case) bool { return c.Name == "greeting" })
	if all[i].Title != "A stricter greeting." {
		t.Errorf("greeting = %q, want the one of -cases", all[i].Title)
	}
	i = slices.IndexFunc(all, func(c Case) bool { return c.Name == "extra" })
	if all[i].Level != "rfc" || all[i].Why != "a reason (RFC 1 §1)" {
		t.Errorf("extra = %+v", all[i])
	}

	write("bad.txtar", "# No level here.\nsmtp g.dialog\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "bad.txtar") {
		t.Errorf("Load with a case lacking a level: %v, want an error naming bad.txtar", err)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Errorf("Load of an empty directory succeeded")
	}
}

func TestSelect(t *testing.T) {
	cases := Builtin()
	basic := Select(cases, regexp.MustCompile(`^basic/`), nil)
	for _, c := range basic {
		if c.Level != "basic" {
			t.Errorf("-run ^basic/ selected %s", c.ID())
		}
	}
	rest := Select(cases, nil, regexp.MustCompile(`^basic/`))
	if len(basic)+len(rest) != len(cases) {
		t.Errorf("-run and -skip of the same regexp split %d cases into %d and %d", len(cases), len(basic), len(rest))
	}
}
