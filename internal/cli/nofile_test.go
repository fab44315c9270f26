package cli

import (
	"strings"
	"testing"
)

func TestFitOpenFiles(t *testing.T) {
	for _, c := range []struct {
		maxConns int
		given    bool
		limit    uint64
		want     int
		says     string
	}{
		{10000, false, 20000, 10000, ""},
		{19000, true, 20000, 19000, ""},
		{19900, true, 20000, 19900, "warning"},
		{10000, false, 4096, 3904, "at most 3904 sessions"},
		{10000, false, 10, 0, "at most 0 sessions"},
		{10000, false, 0, 10000, ""}, // limit unknown
	} {
		var b strings.Builder
		got := fitOpenFiles(&b, c.maxConns, c.given, c.limit)
		if got != c.want || !strings.Contains(b.String(), c.says) || (c.says == "") != (b.Len() == 0) {
			t.Errorf("fitOpenFiles(%d, given %v, limit %d) = %d, said %q; want %d, saying %q",
				c.maxConns, c.given, c.limit, got, b.String(), c.want, c.says)
		}
	}
}
