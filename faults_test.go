package smtpd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"*", "anything@example.org", true},
		{"bounce@*", "bounce@example.org", true},
		{"bounce@*", "nobounce@example.org", false},
		{"*@example.org", "a/b@example.org", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*b*b*", "abcbd", true},
		{"*b*b*", "abcd", false},
		{"a*", "", false},
		{"**", "", true},
	} {
		if got := glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestParseFaultPlan(t *testing.T) {
	plan, err := ParseFaultPlan(strings.NewReader(`
# greylisting, bounces, a recipient limit, a rate limit, latency, a crash
mail first=2 reply 451 4.7.1 Greylisted, try again later
rcpt match=bounce@* reply 550 5.1.1 No such user here
rcpt nth=3 per=session reply 452 4.5.3 Too many recipients
connect rate=5/s burst=2 reply 421 4.7.0 Slow down
data-end delay=2s
helo match=crash.test drop
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []FaultRule{
		{At: FaultMail, First: 2, Reply: "451 4.7.1 Greylisted, try again later"},
		{At: FaultRcpt, Match: "bounce@*", Reply: "550 5.1.1 No such user here"},
		{At: FaultRcpt, Nth: 3, PerSession: true, Reply: "452 4.5.3 Too many recipients"},
		{At: FaultConnect, Rate: 5, Burst: 2, Reply: "421 4.7.0 Slow down"},
		{At: FaultDataEnd, Delay: 2 * time.Second},
		{At: FaultHelo, Match: "crash.test", Drop: true},
	}
	if len(plan.Rules) != len(want) {
		t.Fatalf("%d rules, want %d", len(plan.Rules), len(want))
	}
	for i := range want {
		if plan.Rules[i] != want[i] {
			t.Errorf("rule %d = %+v, want %+v", i+1, plan.Rules[i], want[i])
		}
	}
	for _, bad := range []string{
		"nowhere reply 250 ok",
		"mail",
		"mail first=x reply 451 no",
		"mail first=1 nth=2 reply 451 no",
		"mail reply 999 no",
		"mail reply",
		"connect rate=5/s reply 421 slow",
		"mail drop reply 451 no",
		"mail per=transaction reply 451 no",
		"mail colour=red reply 451 no",
		"mail delay=-1s",
	} {
		if _, err := ParseFaultPlan(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseFaultPlan(%q): no error", bad)
		} else if !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ParseFaultPlan(%q): error %q names no line", bad, err)
		}
	}
}

func TestFaultReply(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"451 4.7.1 Greylisted, try again later", "451 4.7.1 Greylisted, try again later"},
		{"550 No such user", "550 No such user"},
		{"421 4.7.0", "421 4.7.0 Fault injected"},
		{"452 5.5.3 wrong class", "452 5.5.3 wrong class"},
		{"550 5.1.1 two\r\nlines", "550 5.1.1 two lines"},
	} {
		r, err := parseFaultReply(tc.in)
		if err != nil || r.String() != tc.want {
			t.Errorf("parseFaultReply(%q) = %q, %v; want %q", tc.in, r.String(), err, tc.want)
		}
	}
	if r, _ := parseFaultReply("421 4.7.0 bye"); !r.close {
		t.Error("a 421 fault reply does not close the session")
	}
}

// TestFaultsAct checks the counting rules: first N, the Nth, per session,
// matching, and the token bucket.
func TestFaultsAct(t *testing.T) {
	f, err := newFaults(&FaultPlan{Rules: []FaultRule{
		{At: FaultMail, First: 2, Reply: "451 4.7.1 later"},
		{At: FaultRcpt, Match: "bounce@*", Reply: "550 5.1.1 no"},
		{At: FaultRcpt, Nth: 3, PerSession: true, Reply: "452 4.5.3 enough"},
		{At: FaultConnect, Rate: 1, Burst: 2, Reply: "421 4.7.0 slow"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	acts := func(p FaultPoint, counts map[int]int, subjects ...string) int {
		a, ok := f.act(p, subjects, counts, now)
		if !ok {
			return 0
		}
		return a.reply.code
	}
	// codes returns the codes of n occurrences in a row.
	codes := func(n int, p FaultPoint, counts map[int]int, subjects ...string) string {
		var got []string
		for range n {
			got = append(got, fmt.Sprint(acts(p, counts, subjects...)))
		}
		return strings.Join(got, " ")
	}
	session := map[int]int{}
	if got := []int{acts(FaultMail, session, "a@b"), acts(FaultMail, session, "a@b"), acts(FaultMail, session, "a@b")}; got[0] != 451 || got[1] != 451 || got[2] != 0 {
		t.Errorf("first=2: %v", got)
	}
	if acts(FaultRcpt, session, "Bounce@example.org") != 550 || acts(FaultRcpt, session, "alice@example.org") != 0 {
		t.Error("match=bounce@*")
	}
	// The third RCPT of the session (the bounce counted too).
	if acts(FaultRcpt, session, "carol@example.org") != 452 || acts(FaultRcpt, session, "dave@example.org") != 0 {
		t.Error("nth=3 per=session")
	}
	if got := codes(3, FaultRcpt, map[int]int{}, "x@y"); got != "0 0 452" {
		t.Errorf("nth=3 per=session, another session: %s, want 0 0 452", got)
	}
	// Two tokens, then the limit, then one more a second later.
	if got := codes(3, FaultConnect, session); got != "0 0 421" {
		t.Errorf("burst=2: %s, want 0 0 421", got)
	}
	now = now.Add(time.Second)
	if got := codes(2, FaultConnect, session); got != "0 421" {
		t.Errorf("rate=1/s refill: %s, want 0 421", got)
	}
}
