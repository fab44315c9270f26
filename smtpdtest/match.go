package smtpdtest

import (
	"fmt"
	"strings"

	"github.com/tpe-protos/smtpd"
)

// A Matcher picks messages for WaitFor and ExpectNone, and describes
// itself, so that a failed wait says what it looked for. Its description
// completes "a message …": "to <alice@example.org>".
type Matcher interface {
	Match(*smtpd.Message) bool
	String() string
}

// Func returns a Matcher that picks the messages for which match returns
// true, described as description: say what such a message has, as in "with
// a password reset link".
func Func(description string, match func(*smtpd.Message) bool) Matcher {
	return matcher{description, match}
}

type matcher struct {
	description string
	match       func(*smtpd.Message) bool
}

func (m matcher) Match(msg *smtpd.Message) bool { return m.match(msg) }
func (m matcher) String() string                { return m.description }

// To matches a message with the recipient addr among its envelope
// recipients (compared without regard to case).
func To(addr string) Matcher {
	return Func("to <"+addr+">", func(m *smtpd.Message) bool {
		for _, to := range m.To {
			if strings.EqualFold(to, addr) {
				return true
			}
		}
		return false
	})
}

// From matches a message with the envelope sender addr (compared without
// regard to case); From("") matches the null sender <>.
func From(addr string) Matcher {
	return Func("from <"+addr+">", func(m *smtpd.Message) bool { return strings.EqualFold(m.From, addr) })
}

// Subject matches a message whose Subject header field contains s, once
// decoded (RFC 2047): Subject("café") matches "=?UTF-8?Q?caf=C3=A9?=".
func Subject(s string) Matcher {
	return Func(fmt.Sprintf("with a subject containing %q", s), func(m *smtpd.Message) bool {
		return strings.Contains(m.DecodedHeader("Subject"), s)
	})
}

// And matches a message that all of matchers match (any message, when
// there are none).
func And(matchers ...Matcher) Matcher { return combine(matchers, " and ", true, "of any kind") }

// Or matches a message that one of matchers matches (none, when there are
// none).
func Or(matchers ...Matcher) Matcher { return combine(matchers, " or ", false, "of no kind") }

// combine is And (all is true) and Or (all is false): it answers all when
// every matcher answers all, and !all as soon as one does not. With no
// matchers it answers all, described as none.
func combine(matchers []Matcher, sep string, all bool, none string) Matcher {
	switch len(matchers) {
	case 0:
		return Func(none, func(*smtpd.Message) bool { return all })
	case 1:
		return matchers[0]
	}
	return Func(join(matchers, sep), func(m *smtpd.Message) bool {
		for _, mm := range matchers {
			if mm.Match(m) != all {
				return !all
			}
		}
		return all
	})
}

// Not matches a message that m does not match.
func Not(m Matcher) Matcher {
	return Func("not "+m.String(), func(msg *smtpd.Message) bool { return !m.Match(msg) })
}

// join describes matchers joined by sep, in parentheses when there are
// several, so that nested ones read unambiguously.
func join(matchers []Matcher, sep string) string {
	parts := make([]string, len(matchers))
	for i, m := range matchers {
		parts[i] = m.String()
	}
	return "(" + strings.Join(parts, sep) + ")"
}
