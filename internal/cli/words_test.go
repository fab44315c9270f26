package cli

import (
	"slices"
	"testing"
)

func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  cat  ", []string{"cat"}},
		{"sed -e s/a/b/", []string{"sed", "-e", "s/a/b/"}},
		{`sh -c 'cat; echo "--"'`, []string{"sh", "-c", `cat; echo "--"`}},
		{`sh -c "echo \"a\" \$HOME \x"`, []string{"sh", "-c", `echo "a" $HOME \x`}},
		{`a\ b 'c'"d"e`, []string{"a b", "cde"}},
		{`''`, []string{""}},
	} {
		got, err := splitWords(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`'open`, `"open`, `a "b`} {
		if _, err := splitWords(bad); err == nil {
			t.Errorf("splitWords(%q): no error", bad)
		}
	}
}
