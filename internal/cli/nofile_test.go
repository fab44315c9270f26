package cli

import (
	"strings"
	"testing"
)

func TestFitOpenFiles(t *testing.T) {
	// Each session: its connection and a message's file; with a filter
	// 8 more. Besides: 2×256 mailbox directories, 8 copies, 64 to spare.
	for _, c := range []struct {
		maxConns int
		given    bool
		limit    uint64
		filter   bool
		want     int
		says     string
	}{
		{10000, false, 21000, false, 10000, ""},
		{10000, false, 20000, false, 9644, "at most 9644 sessions"},
		{9000, true, 20000, false, 9000, ""},
		{19000, true, 20000, false, 19000, "warning: -max-conns 19000 does not fit under the open-file limit 20000; raise the limit (ulimit -n) or lower -max-conns to 9644"},
		{10000, false, 20000, true, 1928, "at most 1928 sessions"},
		{10000, false, 4096, false, 1692, "at most 1692 sessions"},
		{10000, false, 10, false, 0, "at most 0 sessions"},
		{10000, false, 0, false, 10000, ""}, // limit unknown
	} {
		var b strings.Builder
		got := fitOpenFiles(&b, c.maxConns, c.given, c.limit, c.filter)
		if got != c.want || !strings.Contains(b.String(), c.says) || (c.says == "") != (b.Len() == 0) {
			t.Errorf("fitOpenFiles(%d, given %v, limit %d, filter %v) = %d, said %q; want %d, saying %q",
				c.maxConns, c.given, c.limit, c.filter, got, b.String(), c.want, c.says)
		}
	}
}
