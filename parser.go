package smtpd

import (
	"errors"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Parse errors. The session maps each to its reply; none of them carries
// reply text (see reply.go).
var (
	errSyntax       = errors.New("syntax error")
	errUnknownParam = errors.New("unsupported parameter")
	errBadParam     = errors.New("bad parameter value")
	errNullPath     = errors.New("null path as recipient")
)

// parseCommand splits a command line (without its line ending) into the verb,
// upper-cased, and the argument. RFC 5321 §4.1.1 puts exactly one space
// between them; like most servers we also take several, and ignore trailing
// white space, which hand-typed sessions are full of.
func parseCommand(line string) (verb, arg string) {
	verb, arg, _ = strings.Cut(line, " ")
	return asciiUpper(verb), strings.Trim(arg, " \t")
}

// asciiUpper upper-cases ASCII letters only: with Unicode rules "quıt"
// (dotless i) would become QUIT.
func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// parseHelo validates the argument of HELO or EHLO. RFC 5321 §4.1.1.1 wants a
// domain or an address literal, but real clients send all kinds of names
// (underscores, bare hostnames), so any single printable token is taken; it
// only ever appears in the Received header and the logs.
func parseHelo(arg string) (string, error) {
	if arg == "" || strings.ContainsAny(arg, " \t") || !printable(arg) {
		return "", errSyntax
	}
	return arg, nil
}

// printable reports whether s is valid UTF-8 without control characters,
// line or paragraph separators, or bidirectional overrides: nothing that
// could break a header line or rearrange what a log or terminal shows.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0, // C0, DEL, C1
			r == 0x2028, r == 0x2029, // line and paragraph separators
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069: // bidi
			return false
		}
	}
	return true
}

// address is a parsed mailbox (RFC 5321 §4.1.2 Mailbox).
type address struct {
	// local is the local part with quoting undone: "a b"@x has local `a b`.
	local string
	// domain is the domain or the address literal (with its brackets).
	// It is empty only for the special recipient <postmaster>.
	domain string
	// raw is the mailbox exactly as written between the angle brackets,
	// without any source route.
	raw string
}

// key returns what tells one mailbox from another: the local part as
// written (RFC 5321 §2.4 makes it case-sensitive) and the domain in lower
// case; the raw form, which may differ in quoting, is left out.
func (a address) key() address {
	return address{local: a.local, domain: strings.ToLower(a.domain)}
}

// ascii reports whether the address is pure ASCII; an address that is not
// needs SMTPUTF8 (RFC 6531 §3.2).
func (a address) ascii() bool { return isASCII(a.raw) }

// mailParams are the parameters of MAIL FROM that the server supports.
type mailParams struct {
	size     int64  // SIZE=, RFC 1870; 0 when not given
	body     string // BODY=, RFC 6152: "7BIT", "8BITMIME", RFC 3030's "BINARYMIME", or "" when not given
	smtputf8 bool   // SMTPUTF8, RFC 6531
	ret      string // RET=, RFC 3461 §4.3: "FULL", "HDRS" or "" when not given
	envID    string // ENVID=, RFC 3461 §4.4, xtext decoded; "" when not given
}

// rcptParams are the parameters of RCPT TO that the server supports: those
// of DSN (RFC 3461 §4.1, §4.2).
type rcptParams struct {
	notify    notifySet
	orcptType string // the addr-type of ORCPT=, lower-cased ("rfc822"); "" when not given
	orcpt     string // the original recipient of ORCPT=, xtext decoded
}

// notifySet is the value of NOTIFY= (RFC 3461 §4.1): NEVER, or any of
// SUCCESS, FAILURE and DELAY; 0 when not given.
type notifySet uint8

const (
	notifyNever notifySet = 1 << iota
	notifySuccess
	notifyFailure
	notifyDelay
)

// notifyNames are the keywords of NOTIFY=, in the order Message reports them.
var notifyNames = [...]struct {
	bit  notifySet
	name string
}{{notifyNever, "NEVER"}, {notifySuccess, "SUCCESS"}, {notifyFailure, "FAILURE"}, {notifyDelay, "DELAY"}}

// names returns the keywords in n; nil for the empty set.
func (n notifySet) names() []string {
	var names []string
	for _, k := range notifyNames {
		if n&k.bit != 0 {
			names = append(names, k.name)
		}
	}
	return names
}

// Lengths RFC 3461 sets for parameter values, in their xtext form.
const (
	maxEnvIDLen = 100 // RFC 3461 §4.4
	maxOrcptLen = 500 // RFC 3461 §4.2
)

// parseMail parses the argument of MAIL: "FROM:" reverse-path [SP params].
// A space after the colon is accepted, as real servers do. Parameters are
// only allowed after EHLO (RFC 5321 §4.1.1.11); lenient ignores those the
// server does not know (Config.TestMode).
func parseMail(arg string, esmtp, lenient bool) (from address, null bool, params mailParams, err error) {
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		return address{}, false, params, errSyntax
	}
	p := &parser{s: strings.TrimLeft(rest, " ")}
	if strings.HasPrefix(p.s, "<>") {
		p.i = 2
		null = true
	} else if from, err = p.path(); err != nil {
		return address{}, false, params, err
	}
	var inline [maxInlineParams]string
	words, err := p.parameters(inline[:0])
	if err != nil {
		return address{}, false, params, err
	}
	params, err = parseMailParams(words, esmtp, lenient)
	return from, null, params, err
}

// parseRcpt parses the argument of RCPT: "TO:" forward-path [SP params].
// The special recipient <postmaster> without a domain is accepted
// (RFC 5321 §4.1.1.3). As with MAIL, parameters need EHLO, and lenient
// ignores those the server does not know.
func parseRcpt(arg string, esmtp, lenient bool) (to address, params rcptParams, err error) {
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		return address{}, params, errSyntax
	}
	p := &parser{s: strings.TrimLeft(rest, " ")}
	if strings.HasPrefix(p.s, "<>") {
		return address{}, params, errNullPath
	}
	if len(p.s) >= 12 && strings.EqualFold(p.s[:12], "<postmaster>") {
		p.i = 12
		to = address{local: "postmaster", raw: p.s[1:11]}
	} else if to, err = p.path(); err != nil {
		return address{}, params, err
	}
	var inline [maxInlineParams]string
	words, err := p.parameters(inline[:0])
	if err != nil {
		return address{}, params, err
	}
	if len(words) == 0 {
		return to, params, nil
	}
	params, err = parseRcptParams(words, esmtp, lenient)
	if err != nil {
		return address{}, rcptParams{}, err
	}
	return to, params, nil
}

// parseMailParams interprets the esmtp-params of MAIL FROM.
func parseMailParams(words []string, esmtp, lenient bool) (mailParams, error) {
	var mp mailParams
	err := eachParam(words, esmtp, lenient, func(key, value string, hasValue bool) error {
		switch key {
		case "SIZE": // RFC 1870 §6: size-value = 1*20DIGIT
			if !hasValue || value == "" || len(value) > 20 || strings.TrimLeft(value, "0123456789") != "" {
				return errBadParam
			}
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				n = math.MaxInt64 // legal, and over any limit
			}
			mp.size = n
		case "BODY": // RFC 6152; BINARYMIME from RFC 3030 §3
			mp.body = strings.ToUpper(value)
			if mp.body != "7BIT" && mp.body != "8BITMIME" && mp.body != "BINARYMIME" {
				return errBadParam
			}
		case "SMTPUTF8": // RFC 6531 §3.4: no value
			if hasValue {
				return errBadParam
			}
			mp.smtputf8 = true
		case "RET": // RFC 3461 §4.3
			mp.ret = strings.ToUpper(value)
			if mp.ret != "FULL" && mp.ret != "HDRS" {
				return errBadParam
			}
		case "ENVID": // RFC 3461 §4.4: printable US-ASCII, as xtext
			id, err := decodeXtext(value)
			if err != nil || id == "" || len(value) > maxEnvIDLen || !isASCII(id) {
				return errBadParam
			}
			mp.envID = id
		default:
			if !lenient {
				return errUnknownParam
			}
		}
		return nil
	})
	return mp, err
}

// parseRcptParams interprets the esmtp-params of RCPT TO.
func parseRcptParams(words []string, esmtp, lenient bool) (rcptParams, error) {
	var rp rcptParams
	err := eachParam(words, esmtp, lenient, func(key, value string, _ bool) error {
		var err error
		switch key {
		case "NOTIFY":
			rp.notify, err = parseNotify(value)
		case "ORCPT":
			rp.orcptType, rp.orcpt, err = parseOrcpt(value)
		default:
			if !lenient {
				err = errUnknownParam
			}
		}
		return err
	})
	return rp, err
}

// eachParam calls f with each esmtp-param of words (RFC 5321 §4.1.2): its
// keyword upper-cased, its value, and whether it has one. A keyword that
// is not one, or any parameter without EHLO (unless lenient), is an
// unknown parameter; the same keyword twice, a bad value.
func eachParam(words []string, esmtp, lenient bool, f func(key, value string, hasValue bool) error) error {
	seen := make(map[string]bool, len(words))
	for _, w := range words {
		key, value, hasValue := strings.Cut(w, "=")
		key = strings.ToUpper(key)
		if !isKeyword(key) || !esmtp && !lenient {
			return errUnknownParam
		}
		if seen[key] {
			return errBadParam
		}
		seen[key] = true
		if err := f(key, value, hasValue); err != nil {
			return err
		}
	}
	return nil
}

// parseNotify parses the value of NOTIFY= (RFC 3461 §4.1):
// "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ), in any case.
func parseNotify(value string) (notifySet, error) {
	var set notifySet
	for word := range strings.SplitSeq(value, ",") {
		var bit notifySet
		for _, k := range notifyNames {
			if strings.EqualFold(word, k.name) {
				bit = k.bit
			}
		}
		if bit == 0 || set&bit != 0 {
			return 0, errBadParam // unknown, empty or repeated
		}
		set |= bit
	}
	if set&notifyNever != 0 && set != notifyNever {
		return 0, errBadParam // NEVER goes alone
	}
	return set, nil
}

// parseOrcpt parses the value of ORCPT= (RFC 3461 §4.2):
// addr-type ";" xtext, where addr-type is an atom ("rfc822", "utf-8"),
// returned lower-cased since it is not case-sensitive. The address must
// decode to printable text; for rfc822, to ASCII.
func parseOrcpt(value string) (addrType, addr string, err error) {
	addrType, encoded, ok := strings.Cut(value, ";")
	p := &parser{s: addrType}
	if !ok || len(value) > maxOrcptLen || !p.atom() || p.i != len(addrType) {
		return "", "", errBadParam
	}
	addr, err = decodeXtext(encoded)
	if err != nil || addr == "" || !printable(addr) ||
		strings.EqualFold(addrType, "rfc822") && !isASCII(addr) {
		return "", "", errBadParam
	}
	return strings.ToLower(addrType), addr, nil
}

// decodeXtext decodes xtext (RFC 3461 §4): each octet is itself when it is
// printable US-ASCII other than "+" and "=", or "+" and two hexadecimal
// digits (upper case in the RFC; lower case is taken too).
func decodeXtext(s string) (string, error) {
	plus := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", errBadParam
			}
			plus++
			i += 2
		case c < 33 || c > 126 || c == '=':
			return "", errBadParam
		}
	}
	if plus == 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s)-2*plus)
	for i := 0; i < len(s); i++ {
		if s[i] == '+' {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f'
}

// unhex returns the value of the hexadecimal digit c.
func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// isKeyword reports whether s is an esmtp-keyword:
// (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
func isKeyword(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

// cutPrefixFold is strings.CutPrefix, ignoring ASCII case.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// parser is a cursor over a command argument. Its methods mirror the
// productions of RFC 5321 §4.1.2, extended for UTF-8 by RFC 6531 §3.3:
// wherever ASCII atext or a domain label character is allowed, so is any
// non-ASCII byte of valid UTF-8 (checked once, in path).
type parser struct {
	s string
	i int
}

func (p *parser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *parser) accept(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(c byte) error {
	if !p.accept(c) {
		return errSyntax
	}
	return nil
}

// path parses Path = "<" [ A-d-l ":" ] Mailbox ">".
// The source route (A-d-l) is parsed and ignored, as RFC 5321 §4.1.1.3 and
// appendix C tell servers to do.
func (p *parser) path() (address, error) {
	if err := p.expect('<'); err != nil {
		return address{}, err
	}
	if p.peek() == '@' {
		if err := p.sourceRoute(); err != nil {
			return address{}, err
		}
	}
	start := p.i
	a, err := p.mailbox()
	if err != nil {
		return address{}, err
	}
	a.raw = p.s[start:p.i]
	if err := p.expect('>'); err != nil {
		return address{}, err
	}
	// RFC 6531 allows UTF-8, not control or format characters: they
	// would reach headers, logs and file names.
	if !printable(a.raw) {
		return address{}, errSyntax
	}
	return a, nil
}

// sourceRoute parses A-d-l ":" where A-d-l = At-domain *( "," At-domain ).
func (p *parser) sourceRoute() error {
	for {
		if err := p.expect('@'); err != nil {
			return err
		}
		if _, err := p.domain(); err != nil {
			return err
		}
		if !p.accept(',') {
			return p.expect(':')
		}
	}
}

// mailbox parses Mailbox = Local-part "@" ( Domain / address-literal ).
func (p *parser) mailbox() (address, error) {
	local, err := p.localPart()
	if err != nil {
		return address{}, err
	}
	if err := p.expect('@'); err != nil {
		return address{}, err
	}
	var domain string
	if p.peek() == '[' {
		domain, err = p.addressLiteral()
	} else {
		domain, err = p.domain()
	}
	if err != nil {
		return address{}, err
	}
	return address{local: local, domain: domain}, nil
}

// localPart parses Local-part = Dot-string / Quoted-string and returns its
// value, with quoting undone.
func (p *parser) localPart() (string, error) {
	if p.peek() == '"' {
		return p.quotedString()
	}
	return p.dotString()
}

// dotString parses Dot-string = Atom *("." Atom).
func (p *parser) dotString() (string, error) {
	start := p.i
	for {
		if !p.atom() {
			return "", errSyntax
		}
		if !p.accept('.') {
			return p.s[start:p.i], nil
		}
	}
}

// atom parses Atom = 1*atext and reports whether it found one.
func (p *parser) atom() bool {
	start := p.i
	for p.i < len(p.s) && isAtext(p.s[p.i]) {
		p.i++
	}
	return p.i > start
}

// quotedString parses Quoted-string = DQUOTE *QcontentSMTP DQUOTE, where
// QcontentSMTP = qtextSMTP / quoted-pairSMTP.
func (p *parser) quotedString() (string, error) {
	if err := p.expect('"'); err != nil {
		return "", err
	}
	var b strings.Builder
	for {
		if p.i >= len(p.s) {
			return "", errSyntax
		}
		c := p.s[p.i]
		p.i++
		switch {
		case c == '"':
			return b.String(), nil
		case c == '\\': // quoted-pairSMTP = %d92 %d32-126
			if p.i >= len(p.s) || p.s[p.i] < 32 || p.s[p.i] > 126 {
				return "", errSyntax
			}
			b.WriteByte(p.s[p.i])
			p.i++
		case c >= 32 && c <= 126 || c >= utf8.RuneSelf: // qtextSMTP
			b.WriteByte(c)
		default:
			return "", errSyntax
		}
	}
}

// domain parses Domain = sub-domain *("." sub-domain), where
// sub-domain = Let-dig [Ldh-str]: letters, digits and inner hyphens.
func (p *parser) domain() (string, error) {
	start := p.i
	for {
		labelStart := p.i
		for p.i < len(p.s) && (isAlnum(p.s[p.i]) || p.s[p.i] == '-' || p.s[p.i] >= utf8.RuneSelf) {
			p.i++
		}
		label := p.s[labelStart:p.i]
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return "", errSyntax
		}
		if !p.accept('.') {
			return p.s[start:p.i], nil
		}
	}
}

// addressLiteral parses address-literal = "[" ( IPv4-address-literal /
// IPv6-address-literal / General-address-literal ) "]".
func (p *parser) addressLiteral() (string, error) {
	start := p.i
	end := strings.IndexByte(p.s[p.i:], ']')
	if end < 0 {
		return "", errSyntax
	}
	inner := p.s[p.i+1 : p.i+end]
	p.i += end + 1
	if tag, value, ok := strings.Cut(inner, ":"); ok {
		if strings.EqualFold(tag, "IPv6") {
			ip, err := netip.ParseAddr(value)
			if err != nil || !ip.Is6() || ip.Zone() != "" {
				return "", errSyntax
			}
			return p.s[start:p.i], nil
		}
		// General-address-literal = Standardized-tag ":" 1*dcontent
		if !isKeyword(tag) || value == "" || !isDcontent(value) {
			return "", errSyntax
		}
		return p.s[start:p.i], nil
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || !ip.Is4() {
		return "", errSyntax
	}
	return p.s[start:p.i], nil
}

// maxInlineParams is how many parameters parseMail and parseRcpt hold
// without allocating: real clients send a handful at most (SIZE, BODY,
// SMTPUTF8, AUTH, RET, ENVID); more are still taken, in a slice grown by
// append.
const maxInlineParams = 8

// parameters parses what follows a path: nothing, or SP-separated
// esmtp-params (RFC 5321 §4.1.2 Mail-parameters). Each is appended whole
// ("SIZE=100") to words, which the caller may back by an array on its stack;
// values are checked by the caller.
func (p *parser) parameters(words []string) ([]string, error) {
	rest := p.s[p.i:]
	if rest == "" {
		return words, nil
	}
	if rest[0] != ' ' {
		return nil, errSyntax
	}
	// SplitSeq rather than Split: no slice of the pieces is built, once
	// per MAIL and RCPT.
	for w := range strings.SplitSeq(rest, " ") {
		if w == "" {
			continue // several spaces, as typed by hand
		}
		if !printable(w) || strings.ContainsRune(w, '\t') {
			return nil, errSyntax
		}
		words = append(words, w)
	}
	return words, nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isAtext reports whether c may appear in an Atom (RFC 5322 §3.2.3 atext),
// or is a byte of a UTF-8 sequence (RFC 6531 §3.3).
func isAtext(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0 || c >= utf8.RuneSelf
}

// isDcontent reports whether s is 1*dcontent: printable US-ASCII other than
// "[", "\" and "]" (RFC 5321 §4.1.3).
func isDcontent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '[' || c == '\\' || c == ']' {
			return false
		}
	}
	return true
}

// parseBDAT parses the argument of BDAT (RFC 3030 §2):
// chunk-size [SP "LAST"], where chunk-size = 1*DIGIT. A size that does not
// fit in an int64 is refused: no client sends such a chunk.
func parseBDAT(arg string) (size int64, last bool, err error) {
	digits, rest, _ := strings.Cut(arg, " ")
	if rest = strings.TrimLeft(rest, " "); rest != "" {
		if !strings.EqualFold(rest, "LAST") {
			return 0, false, errSyntax
		}
		last = true
	}
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false, errSyntax
	}
	size, err = strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, false, errSyntax
	}
	return size, last, nil
}
