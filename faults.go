package smtpd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FaultPoint is a point of the SMTP dialogue where a FaultRule can act.
type FaultPoint int

// The points of the dialogue, in the order a session meets them.
const (
	FaultConnect FaultPoint = iota // a new connection, before the greeting
	FaultHelo                      // HELO or EHLO
	FaultAuth                      // AUTH
	FaultMail                      // MAIL FROM
	FaultRcpt                      // RCPT TO
	FaultData                      // the DATA command, before 354
	FaultDataEnd                   // the end of the message data, before it is stored
)

var faultPointNames = [...]string{"connect", "helo", "auth", "mail", "rcpt", "data", "data-end"}

// String returns the name of the point in fault plan files.
func (p FaultPoint) String() string {
	if p >= 0 && int(p) < len(faultPointNames) {
		return faultPointNames[p]
	}
	return "FaultPoint(" + strconv.Itoa(int(p)) + ")"
}

// A FaultRule makes the server misbehave at one point of the dialogue, so
// that a test can see how the code under test copes: answer another reply,
// wait first, or drop the connection. Rules act deterministically: on
// matching addresses, on the first N or the Nth occurrence, or when a token
// bucket runs dry.
type FaultRule struct {
	// At is the point of the dialogue.
	At FaultPoint
	// Match, if not empty, limits the rule to occurrences whose subject
	// matches this pattern, without regard to case ('*' stands for any
	// run of characters, '?' for one):
	// the client's IP address at FaultConnect, the HELO name at
	// FaultHelo, the user name at FaultAuth, the sender at FaultMail,
	// the recipient at FaultRcpt, and any recipient of the transaction
	// at FaultData and FaultDataEnd. "bounce@*" matches every
	// bounce@ address.
	Match string
	// First makes the rule act on the first First matching occurrences
	// only ("451 for the first two tries, then accept").
	First int
	// Nth makes the rule act on the Nth matching occurrence only ("452
	// on the third RCPT").
	Nth int
	// PerSession counts occurrences within each session instead of
	// across the server.
	PerSession bool
	// Rate, with Burst, makes the rule a token bucket: each matching
	// occurrence takes a token, Rate tokens come back per second up to
	// Burst, and the rule acts when there is none left (a rate limit).
	Rate  float64
	Burst int
	// Delay waits before the reply, or before the server goes on when
	// the rule has no Reply and no Drop.
	Delay time.Duration
	// Reply replaces the server's reply: a code, an optional enhanced
	// code and a text, as "451 4.7.1 Greylisted, try again later". The
	// command is not carried out; at FaultDataEnd the message is not
	// stored. A 421 reply, or any reply but 2xx at FaultConnect, closes
	// the connection after it is sent.
	Reply string
	// Drop closes the connection without a reply.
	Drop bool
}

// A FaultPlan is the set of rules a server follows; the first rule that
// acts at a point wins. Set one with Config.Faults, or replace it while the
// server runs with Server.SetFaults.
type FaultPlan struct {
	Rules []FaultRule
}

// check returns an error for a rule that cannot work.
func (r *FaultRule) check() error {
	switch {
	case r.At < FaultConnect || r.At > FaultDataEnd:
		return fmt.Errorf("unknown point %d", r.At)
	case r.First < 0 || r.Nth < 0 || r.Burst < 0 || r.Rate < 0 || r.Delay < 0:
		return errors.New("first, nth, rate, burst and delay must not be negative")
	case r.First > 0 && r.Nth > 0:
		return errors.New("first and nth do not go together")
	case (r.Rate > 0) != (r.Burst > 0):
		return errors.New("rate and burst go together")
	case r.Rate > 0 && (r.First > 0 || r.Nth > 0):
		return errors.New("a rate limit has no first or nth")
	case r.Drop && r.Reply != "":
		return errors.New("a rule either replies or drops")
	case !r.Drop && r.Reply == "" && r.Delay == 0:
		return errors.New("the rule does nothing: give a reply, drop or a delay")
	}
	if r.Reply != "" {
		if _, err := parseFaultReply(r.Reply); err != nil {
			return err
		}
	}
	return nil
}

// parseFaultReply turns "451 4.7.1 Greylisted" into a reply.
func parseFaultReply(s string) (reply, error) {
	code, rest, _ := strings.Cut(strings.TrimSpace(s), " ")
	n, err := strconv.Atoi(code)
	if err != nil || n < 200 || n > 599 || len(code) != 3 {
		return reply{}, fmt.Errorf("reply %q: want a code from 200 to 599 first", s)
	}
	r := reply{code: n, text: replyText(rest), why: "a fault rule of the test's plan, not the server's own judgement", rfc: "RFC 5321 §4.2"}
	if word, text, _ := strings.Cut(r.text, " "); isEnhancedCode(word, n) {
		r.enh, r.text = word, text
	}
	if r.text == "" {
		r.text = "Fault injected"
	}
	r.close = n == 421
	return r, nil
}

// isEnhancedCode reports whether s is an RFC 3463 code of the reply's class.
func isEnhancedCode(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 || p[0] == '+' {
			return false
		}
	}
	return true
}

// ParseFaultPlan reads a plan in its text form, one rule per line:
//
//	# point [match=PATTERN] [first=N | nth=N | rate=N/s burst=N] [per=session] [delay=D] (reply CODE [X.Y.Z] TEXT | drop)
//	mail first=2 reply 451 4.7.1 Greylisted, try again later
//	rcpt match=bounce@* reply 550 5.1.1 No such user here
//	rcpt nth=3 per=session reply 452 4.5.3 Too many recipients
//	connect rate=5/s burst=2 reply 421 4.7.0 Too many connections, slow down
//	data-end delay=2s
//	helo match=crash.test drop
//
// Points are connect, helo, auth, mail, rcpt, data and data-end; "reply"
// takes the rest of the line. Blank lines and lines starting with # are
// ignored.
func ParseFaultPlan(r io.Reader) (*FaultPlan, error) {
	plan := &FaultPlan{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rule, err := parseFaultRule(line)
		if err != nil {
			return nil, fmt.Errorf("smtpd: fault plan line %d: %w", n, err)
		}
		plan.Rules = append(plan.Rules, rule)
	}
	return plan, sc.Err()
}

func parseFaultRule(line string) (FaultRule, error) {
	var rule FaultRule
	words := strings.Fields(line)
	found := false
	for i, name := range faultPointNames {
		if words[0] == name {
			rule.At, found = FaultPoint(i), true
		}
	}
	if !found {
		return rule, fmt.Errorf("%q is not a point (%s)", words[0], strings.Join(faultPointNames[:], ", "))
	}
	for i := 1; i < len(words); i++ {
		w := words[i]
		if w == "reply" {
			_, rest, _ := strings.Cut(line, " reply ")
			if rest == "" {
				return rule, errors.New("reply needs a code and a text")
			}
			rule.Reply = strings.TrimSpace(rest)
			break
		}
		if w == "drop" {
			rule.Drop = true
			continue
		}
		key, value, ok := strings.Cut(w, "=")
		if !ok {
			return rule, fmt.Errorf("%q is not key=value, reply or drop", w)
		}
		if err := rule.set(key, value); err != nil {
			return rule, err
		}
	}
	return rule, rule.check()
}

// set sets one key=value setting of a rule's text form.
func (r *FaultRule) set(key, value string) error {
	var err error
	switch key {
	case "match":
		r.Match = value
	case "first":
		r.First, err = strconv.Atoi(value)
	case "nth":
		r.Nth, err = strconv.Atoi(value)
	case "burst":
		r.Burst, err = strconv.Atoi(value)
	case "rate":
		r.Rate, err = strconv.ParseFloat(strings.TrimSuffix(value, "/s"), 64)
	case "delay":
		r.Delay, err = time.ParseDuration(value)
	case "per":
		if value != "session" {
			return fmt.Errorf("per=%s: only per=session", value)
		}
		r.PerSession = true
	default:
		return fmt.Errorf("unknown setting %q", key)
	}
	if err != nil {
		return fmt.Errorf("%s=%s: %w", key, value, err)
	}
	return nil
}

// faults is a plan in force: its rules, and their counts and buckets.
type faults struct {
	rules   []FaultRule
	replies []reply // parsed Reply of each rule

	mu     sync.Mutex
	counts []int // matching occurrences so far, per rule (server-wide)
	tokens []float64
	filled []time.Time // when each bucket was last refilled
}

func newFaults(p *FaultPlan) (*faults, error) {
	if p == nil {
		return nil, nil
	}
	f := &faults{
		rules:   append([]FaultRule(nil), p.Rules...),
		replies: make([]reply, len(p.Rules)),
		counts:  make([]int, len(p.Rules)),
		tokens:  make([]float64, len(p.Rules)),
		filled:  make([]time.Time, len(p.Rules)),
	}
	for i := range f.rules {
		r := &f.rules[i]
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("smtpd: fault rule %d (%s): %w", i+1, r.At, err)
		}
		if r.Reply != "" {
			f.replies[i], _ = parseFaultReply(r.Reply)
		}
		f.tokens[i] = float64(r.Burst)
	}
	return f, nil
}

// faultAction is what a rule that acts asks of the session.
type faultAction struct {
	rule  int // index in the plan, for the trace
	delay time.Duration
	reply reply // code 0: no reply of its own
	drop  bool
}

// act finds the first rule at point p that acts on an occurrence whose
// subjects are given (an address, a name; any of them may match), counting
// the occurrence for every rule that matches it. sessionCounts holds the
// session's own counts for PerSession rules.
func (f *faults) act(p FaultPoint, subjects []string, sessionCounts map[int]int, now time.Time) (faultAction, bool) {
	if f == nil {
		return faultAction{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var found faultAction
	acted := false
	for i := range f.rules {
		r := &f.rules[i]
		if r.At != p || !matchesAny(r.Match, subjects) {
			continue
		}
		var n int
		if r.PerSession {
			sessionCounts[i]++
			n = sessionCounts[i]
		} else {
			f.counts[i]++
			n = f.counts[i]
		}
		if acted || !f.acts(i, n, now) {
			continue
		}
		acted = true
		found = faultAction{rule: i, delay: r.Delay, reply: f.replies[i], drop: r.Drop}
	}
	return found, acted
}

// acts reports whether rule i acts on its nth matching occurrence.
func (f *faults) acts(i, n int, now time.Time) bool {
	r := &f.rules[i]
	switch {
	case r.First > 0:
		return n <= r.First
	case r.Nth > 0:
		return n == r.Nth
	case r.Rate > 0:
		if !f.filled[i].IsZero() {
			f.tokens[i] = min(float64(r.Burst), f.tokens[i]+now.Sub(f.filled[i]).Seconds()*r.Rate)
		}
		f.filled[i] = now
		if f.tokens[i] >= 1 {
			f.tokens[i]--
			return false // within the rate: the server goes on
		}
		return true
	}
	return true
}

// matchesAny reports whether pattern is empty or matches one of subjects.
func matchesAny(pattern string, subjects []string) bool {
	if pattern == "" {
		return true
	}
	pattern = strings.ToLower(pattern)
	for _, s := range subjects {
		if glob(pattern, strings.ToLower(s)) {
			return true
		}
	}
	return false
}

// glob reports whether s matches pattern, where '*' matches any run of
// characters (an address's '/' or '.' too, unlike path.Match) and '?' any
// one.
func glob(pattern, s string) bool {
	p, t := []rune(pattern), []rune(s)
	star, mark := -1, 0 // the last '*' seen, and where its match ends in t
	for i, j := 0, 0; j < len(t); {
		switch {
		case i < len(p) && (p[i] == '?' || p[i] == t[j]):
			i++
			j++
		case i < len(p) && p[i] == '*':
			star, mark = i, j
			i++
		case star >= 0:
			i = star + 1
			mark++
			j = mark
		default:
			return false
		}
		if j == len(t) {
			for i < len(p) && p[i] == '*' {
				i++
			}
			return i == len(p)
		}
	}
	for _, r := range p {
		if r != '*' {
			return false
		}
	}
	return true
}

// SetFaults replaces the fault plan while the server runs; nil removes it.
// Counts and buckets start afresh. It returns an error, and keeps the plan
// in force, when a rule cannot work.
func (srv *Server) SetFaults(p *FaultPlan) error {
	f, err := newFaults(p)
	if err != nil {
		return err
	}
	srv.faults.Store(f)
	return nil
}

// fault asks the fault plan whether a rule acts at point p on an occurrence
// with these subjects (see FaultRule.Match). If one does, it waits out the
// rule's delay and returns the reply to send instead of the server's own
// (replyHangUp to drop the connection) and true. A rule with only a delay
// returns false once it has waited: the server goes on as usual.
func (s *session) fault(p FaultPoint, subjects ...string) (reply, bool) {
	f := s.srv.faults.Load()
	if f == nil {
		return reply{}, false
	}
	if s.faultPlan != f { // a new plan: per-session counts start afresh
		s.faultPlan, s.faultCounts = f, make(map[int]int)
	}
	a, ok := f.act(p, subjects, s.faultCounts, time.Now())
	if !ok {
		return reply{}, false
	}
	switch {
	case a.drop:
		s.event("fault rule %d (%s): drop the connection", a.rule+1, p)
		s.log.drop()
	case a.reply.code != 0:
		s.event("fault rule %d (%s): answer %q", a.rule+1, p, a.reply.String())
	default:
		s.event("fault rule %d (%s): wait %v", a.rule+1, p, a.delay)
	}
	if a.delay > 0 {
		select {
		case <-time.After(a.delay):
		case <-s.srv.ctx.Done():
		}
	}
	switch {
	case a.drop:
		return replyHangUp, true
	case a.reply.code != 0:
		return a.reply, true
	}
	return reply{}, false
}

// recipients returns the transaction's recipients, as fault subjects.
func (s *session) recipients() []string {
	rcpts := make([]string, len(s.rcpts))
	for i, to := range s.rcpts {
		rcpts[i] = to.raw
	}
	return rcpts
}
