package check

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// runSuite runs cases against addr (with the Maildir root maildir, if
// not empty) and returns the results.
func runSuite(t *testing.T, cases []Case, addr, maildir string, timeout time.Duration) []Result {
	t.Helper()
	var results []Result
	opts := Options{Addr: addr, Maildir: maildir, Timeout: timeout, CaseTimeout: 2 * time.Minute}
	if err := Run(context.Background(), cases, opts, func(r Result) { results = append(results, r) }); err != nil {
		t.Fatal(err)
	}
	if len(results) != len(cases) {
		t.Fatalf("%d results for %d cases", len(results), len(cases))
	}
	return results
}

// failed returns the IDs of the failed cases.
func failed(results []Result) []string {
	var ids []string
	for _, r := range results {
		if r.Outcome == Fail {
			ids = append(ids, r.ID())
		}
	}
	return ids
}

// describe lists results for an error message.
func describe(results []Result) string {
	var b strings.Builder
	for _, r := range results {
		if r.Outcome != Pass {
			fmt.Fprintf(&b, "  %s %s: %s\n", r.Outcome, r.ID(), r.Reason)
		}
	}
	return b.String()
}

// TestFlawlessToy checks that a small server written to the RFCs passes
// every case it does not skip: the suite asks for nothing more.
func TestFlawlessToy(t *testing.T) {
	ty := startToy(t, flawless)
	results := runSuite(t, Builtin(), ty.addr(), ty.maildir, 10*time.Second)
	if f := failed(results); len(f) > 0 {
		t.Errorf("the flawless toy server failed %v:\n%s", f, describe(results))
	}
}

// TestBrokenToys checks that each deliberately broken server fails the
// case made for its flaw, and only a few others.
func TestBrokenToys(t *testing.T) {
	for _, tc := range []struct {
		name string
		flaw flaw
		own  string // the case that must fail
		most int    // failures allowed in all
	}{
		{"ends DATA at LF.LF", flawLFDotLF, "robustness/smuggle_lf_lf", 3},
		{"loses a pipelined batch", flawDropsBatch, "rfc/pipelining", 4},
		{"answers 250 to unknown commands", flawAcceptsAll, "basic/unknown_command", 2},
		{"no 503 on sequence errors", flawNoSequence, "basic/seq_rcpt_before_mail", 8},
		{"closes mid-DATA", flawClosesInData, "rfc/message_64k", 3},
		{"no dot-unstuffing", flawNoUnstuffing, "basic/dot_stuffing", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // mostly waiting for replies that do not come
			ty := startToy(t, tc.flaw)
			// A broken server makes some cases wait for replies that
			// never come: wait less.
			results := runSuite(t, Builtin(), ty.addr(), ty.maildir, 3*time.Second)
			f := failed(results)
			if !slices.Contains(f, tc.own) {
				t.Errorf("%s passed against a server that %s:\n%s", tc.own, tc.name, describe(results))
			}
			if len(f) > tc.most {
				t.Errorf("%d cases failed, want at most %d: %v", len(f), tc.most, f)
			}
			t.Logf("failed: %v", f)
		})
	}
}
