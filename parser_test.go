package smtpd

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name     string
		line     string
		wantVerb string
		wantArg  string
	}{
		{name: "verb only", line: "QUIT", wantVerb: "QUIT", wantArg: ""},
		{name: "lower case verb", line: "quit", wantVerb: "QUIT", wantArg: ""},
		{name: "mixed case verb", line: "eHlO client.test", wantVerb: "EHLO", wantArg: "client.test"},
		{name: "argument kept verbatim", line: "MAIL FROM:<Bob@Example.NET> SIZE=10", wantVerb: "MAIL", wantArg: "FROM:<Bob@Example.NET> SIZE=10"},
		{name: "several spaces after verb", line: "HELO   client.test", wantVerb: "HELO", wantArg: "client.test"},
		{name: "trailing white space dropped", line: "NOOP \t ", wantVerb: "NOOP", wantArg: ""},
		{name: "trailing white space after argument", line: "VRFY bob\t", wantVerb: "VRFY", wantArg: "bob"},
		{name: "inner spaces of argument kept", line: "HELP a  b", wantVerb: "HELP", wantArg: "a  b"},
		{name: "long verb", line: "STARTTLS", wantVerb: "STARTTLS", wantArg: ""},
		{name: "empty line", line: "", wantVerb: "", wantArg: ""},
		{name: "leading space gives empty verb", line: " QUIT", wantVerb: "", wantArg: "QUIT"},
		{name: "http request line", line: "GET / HTTP/1.1", wantVerb: "GET", wantArg: "/ HTTP/1.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			verb, arg := parseCommand(tc.line)
			if verb != tc.wantVerb || arg != tc.wantArg {
				t.Errorf("parseCommand(%q) = %q, %q; want %q, %q", tc.line, verb, arg, tc.wantVerb, tc.wantArg)
			}
		})
	}
}

// TestParseCommandNonASCIIVerb checks that only ASCII letters are
// upper-cased: verbs are ASCII (RFC 5321 §2.4 makes them case-insensitive in
// ASCII), so "quıt" with a dotless ı, or "ſend" with a long s, must not
// become QUIT or SEND through Unicode case mapping.
func TestParseCommandNonASCIIVerb(t *testing.T) {
	tests := []struct {
		name string
		line string
		not  string
	}{
		{name: "dotless i", line: "quıt", not: "QUIT"},
		{name: "dotless i in MAIL", line: "maıl FROM:<a@b>", not: "MAIL"},
		{name: "long s", line: "ſend", not: "SEND"},
		{name: "Kelvin sign", line: "\u212aeep", not: "KEEP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if verb, _ := parseCommand(tc.line); verb == tc.not {
				t.Errorf("parseCommand(%q) verb = %q, want anything but %q", tc.line, verb, tc.not)
			}
		})
	}
}

func TestParseHelo(t *testing.T) {
	tests := []struct {
		name    string
		arg     string
		want    string
		wantErr error
	}{
		{name: "domain", arg: "client.test", want: "client.test"},
		{name: "bare hostname", arg: "laptop", want: "laptop"},
		{name: "underscore", arg: "my_host.local", want: "my_host.local"},
		{name: "IPv4 literal", arg: "[192.0.2.1]", want: "[192.0.2.1]"},
		{name: "IPv6 literal", arg: "[IPv6:2001:db8::1]", want: "[IPv6:2001:db8::1]"},
		{name: "UTF-8 name", arg: "bücher.example", want: "bücher.example"},
		{name: "empty", arg: "", wantErr: errSyntax},
		{name: "two words", arg: "client.test extra", wantErr: errSyntax},
		{name: "tab inside", arg: "a\tb", wantErr: errSyntax},
		{name: "NUL", arg: "a\x00b", wantErr: errSyntax},
		{name: "CR", arg: "a\rb", wantErr: errSyntax},
		{name: "DEL", arg: "a\x7fb", wantErr: errSyntax},
		{name: "C1 control", arg: "a\u0085b", wantErr: errSyntax},
		{name: "invalid UTF-8", arg: "a\xffb", wantErr: errSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHelo(tc.arg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("parseHelo(%q) error = %v, want %v", tc.arg, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("parseHelo(%q) = %q, want %q", tc.arg, got, tc.want)
			}
		})
	}
}

func TestParseMail(t *testing.T) {
	tests := []struct {
		name       string
		arg        string
		esmtp      bool
		want       address
		wantNull   bool
		wantParams mailParams
		wantErr    error
	}{
		// Plain paths.
		{name: "simple", arg: "FROM:<bob@example.net>", want: address{local: "bob", domain: "example.net", raw: "bob@example.net"}},
		{name: "lower case keyword", arg: "from:<bob@example.net>", want: address{local: "bob", domain: "example.net", raw: "bob@example.net"}},
		{name: "case kept", arg: "FROM:<Bob@Example.NET>", want: address{local: "Bob", domain: "Example.NET", raw: "Bob@Example.NET"}},
		{name: "space after colon", arg: "FROM: <bob@example.net>", want: address{local: "bob", domain: "example.net", raw: "bob@example.net"}},
		{name: "several spaces after colon", arg: "FROM:   <bob@example.net>", want: address{local: "bob", domain: "example.net", raw: "bob@example.net"}},
		{name: "dotted local part", arg: "FROM:<bob.smith@mail.example.net>", want: address{local: "bob.smith", domain: "mail.example.net", raw: "bob.smith@mail.example.net"}},
		{name: "atext specials", arg: "FROM:<a!#$%&'*+-/=?^_`{|}~z@example.net>", want: address{local: "a!#$%&'*+-/=?^_`{|}~z", domain: "example.net", raw: "a!#$%&'*+-/=?^_`{|}~z@example.net"}},
		{name: "hyphen inside label", arg: "FROM:<a@b-c.d>", want: address{local: "a", domain: "b-c.d", raw: "a@b-c.d"}},
		{name: "trailing space after path", arg: "FROM:<a@b> ", want: address{local: "a", domain: "b", raw: "a@b"}},

		// The null reverse path.
		{name: "null sender", arg: "FROM:<>", wantNull: true},
		{name: "null sender after space", arg: "FROM: <>", wantNull: true},
		{name: "null sender with params", arg: "FROM:<> SIZE=10 BODY=8BITMIME", esmtp: true, wantNull: true, wantParams: mailParams{size: 10, body: "8BITMIME"}},
		{name: "null sender with junk", arg: "FROM:<>>", wantErr: errSyntax},
		{name: "null sender with params after HELO", arg: "FROM:<> SIZE=10", wantErr: errUnknownParam},

		// Quoted local parts.
		{name: "quoted with space", arg: `FROM:<"bob smith"@example.net>`, want: address{local: "bob smith", domain: "example.net", raw: `"bob smith"@example.net`}},
		{name: "quoted with escaped quote", arg: `FROM:<"a\"b"@example.net>`, want: address{local: `a"b`, domain: "example.net", raw: `"a\"b"@example.net`}},
		{name: "quoted with escaped backslash", arg: `FROM:<"a\\b"@example.net>`, want: address{local: `a\b`, domain: "example.net", raw: `"a\\b"@example.net`}},
		{name: "quoted with escaped letter", arg: `FROM:<"\a"@example.net>`, want: address{local: "a", domain: "example.net", raw: `"\a"@example.net`}},
		{name: "quoted with angle brackets", arg: `FROM:<"a>b<"@example.net>`, want: address{local: "a>b<", domain: "example.net", raw: `"a>b<"@example.net`}},
		{name: "quoted empty", arg: `FROM:<""@example.net>`, want: address{local: "", domain: "example.net", raw: `""@example.net`}},
		{name: "quoted unterminated", arg: `FROM:<"ab@example.net>`, wantErr: errSyntax},
		{name: "quoted escape at end", arg: `FROM:<"ab\`, wantErr: errSyntax},
		{name: "quoted escaped control", arg: "FROM:<\"a\\\x01\"@example.net>", wantErr: errSyntax},
		{name: "quoted raw control", arg: "FROM:<\"a\x01\"@example.net>", wantErr: errSyntax},
		{name: "quoted raw tab", arg: "FROM:<\"a\tb\"@example.net>", wantErr: errSyntax},
		{name: "quoted then junk", arg: `FROM:<"a"b@example.net>`, wantErr: errSyntax},

		// Source routes are parsed and dropped (RFC 5321 §4.1.1.3).
		{name: "source route", arg: "FROM:<@relay.test:bob@example.net>", want: address{local: "bob", domain: "example.net", raw: "bob@example.net"}},
		{name: "source route of two", arg: "FROM:<@r1.test,@r2.test:bob@example.net>", want: address{local: "bob", domain: "example.net", raw: "bob@example.net"}},
		{name: "source route without colon", arg: "FROM:<@r1.test bob@example.net>", wantErr: errSyntax},
		{name: "source route with bad domain", arg: "FROM:<@-r.test:bob@example.net>", wantErr: errSyntax},
		{name: "source route only", arg: "FROM:<@r1.test:>", wantErr: errSyntax},

		// Address literals.
		{name: "IPv4 literal", arg: "FROM:<a@[192.0.2.1]>", want: address{local: "a", domain: "[192.0.2.1]", raw: "a@[192.0.2.1]"}},
		{name: "IPv6 literal", arg: "FROM:<a@[IPv6:2001:db8::1]>", want: address{local: "a", domain: "[IPv6:2001:db8::1]", raw: "a@[IPv6:2001:db8::1]"}},
		{name: "IPv6 literal tag any case", arg: "FROM:<a@[ipv6:::1]>", want: address{local: "a", domain: "[ipv6:::1]", raw: "a@[ipv6:::1]"}},
		{name: "general literal", arg: "FROM:<a@[x-tag:some;thing]>", want: address{local: "a", domain: "[x-tag:some;thing]", raw: "a@[x-tag:some;thing]"}},
		{name: "IPv4 literal out of range", arg: "FROM:<a@[192.0.2.256]>", wantErr: errSyntax},
		{name: "IPv4 literal short", arg: "FROM:<a@[192.0.2]>", wantErr: errSyntax},
		// Without its tag an IPv6 address is, by the grammar, a
		// General-address-literal whose Standardized-tag is "2001".
		{name: "IPv6 without tag", arg: "FROM:<a@[2001:db8::1]>", want: address{local: "a", domain: "[2001:db8::1]", raw: "a@[2001:db8::1]"}},
		{name: "IPv6 tag with IPv4", arg: "FROM:<a@[IPv6:192.0.2.1]>", wantErr: errSyntax},
		{name: "IPv6 with zone", arg: "FROM:<a@[IPv6:fe80::1%eth0]>", wantErr: errSyntax},
		{name: "IPv6 bad", arg: "FROM:<a@[IPv6:2001:db8:::1]>", wantErr: errSyntax},
		{name: "general literal empty value", arg: "FROM:<a@[x:]>", wantErr: errSyntax},
		{name: "general literal bad tag", arg: "FROM:<a@[-x:y]>", wantErr: errSyntax},
		{name: "general literal with backslash", arg: `FROM:<a@[x:a\b]>`, wantErr: errSyntax},
		{name: "literal unterminated", arg: "FROM:<a@[192.0.2.1>", wantErr: errSyntax},
		{name: "literal empty", arg: "FROM:<a@[]>", wantErr: errSyntax},

		// UTF-8 addresses (RFC 6531).
		{name: "UTF-8 local and domain", arg: "FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8", esmtp: true, want: address{local: "δοκιμή", domain: "παράδειγμα.δοκιμή", raw: "δοκιμή@παράδειγμα.δοκιμή"}, wantParams: mailParams{smtputf8: true}},
		{name: "UTF-8 without the parameter still parses", arg: "FROM:<josé@example.net>", want: address{local: "josé", domain: "example.net", raw: "josé@example.net"}},
		{name: "UTF-8 in quoted local part", arg: `FROM:<"jo sé"@example.net>`, want: address{local: "jo sé", domain: "example.net", raw: `"jo sé"@example.net`}},
		{name: "invalid UTF-8 local part", arg: "FROM:<a\xffb@example.net>", wantErr: errSyntax},
		{name: "invalid UTF-8 domain", arg: "FROM:<ab@ex\xc3ample.net>", wantErr: errSyntax},
		{name: "invalid UTF-8 in quotes", arg: "FROM:<\"a\xff\"@example.net>", wantErr: errSyntax},

		// Malformed paths.
		{name: "no keyword", arg: "<bob@example.net>", wantErr: errSyntax},
		{name: "keyword without colon", arg: "FROM <bob@example.net>", wantErr: errSyntax},
		{name: "space before colon", arg: "FROM :<bob@example.net>", wantErr: errSyntax},
		{name: "no brackets", arg: "FROM:bob@example.net", wantErr: errSyntax},
		{name: "no closing bracket", arg: "FROM:<bob@example.net", wantErr: errSyntax},
		{name: "double closing bracket", arg: "FROM:<a@b>>", wantErr: errSyntax},
		{name: "empty domain", arg: "FROM:<a@>", wantErr: errSyntax},
		{name: "empty local part", arg: "FROM:<@b>", wantErr: errSyntax},
		{name: "space in local part", arg: "FROM:<a b@c>", wantErr: errSyntax},
		{name: "leading hyphen in label", arg: "FROM:<a@-b.c>", wantErr: errSyntax},
		{name: "trailing hyphen in label", arg: "FROM:<a@b-.c>", wantErr: errSyntax},
		{name: "empty label", arg: "FROM:<a@b..c>", wantErr: errSyntax},
		{name: "trailing dot in domain", arg: "FROM:<a@b.c.>", wantErr: errSyntax},
		{name: "leading dot in local part", arg: "FROM:<.a@b>", wantErr: errSyntax},
		{name: "trailing dot in local part", arg: "FROM:<a.@b>", wantErr: errSyntax},
		{name: "double dot in local part", arg: "FROM:<a..b@c>", wantErr: errSyntax},
		{name: "no at sign", arg: "FROM:<postmaster>", wantErr: errSyntax},
		{name: "two at signs", arg: "FROM:<a@b@c>", wantErr: errSyntax},
		{name: "underscore in domain", arg: "FROM:<a@b_c.d>", wantErr: errSyntax},
		{name: "trailing junk", arg: "FROM:<a@b>x", wantErr: errSyntax},
		{name: "trailing junk after space", arg: "FROM:<a@b> <c@d>", esmtp: true, wantErr: errUnknownParam},
		{name: "NUL in local part", arg: "FROM:<a\x00b@c>", wantErr: errSyntax},
		{name: "control in parameter", arg: "FROM:<a@b> SIZE=1\x01", esmtp: true, wantErr: errSyntax},
		{name: "empty argument", arg: "", wantErr: errSyntax},
		{name: "keyword only", arg: "FROM:", wantErr: errSyntax},

		// Parameters (RFC 1870, 6152, 6531), only after EHLO.
		{name: "SIZE", arg: "FROM:<a@b> SIZE=12345", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{size: 12345}},
		{name: "SIZE zero", arg: "FROM:<a@b> SIZE=0", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{size: 0}},
		{name: "SIZE twenty digits", arg: "FROM:<a@b> SIZE=00000000000000012345", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{size: 12345}},
		{name: "keyword any case", arg: "FROM:<a@b> size=1 body=8bitmime smtputf8", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{size: 1, body: "8BITMIME", smtputf8: true}},
		{name: "BODY 7BIT", arg: "FROM:<a@b> BODY=7BIT", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{body: "7BIT"}},
		{name: "all three", arg: "FROM:<a@b> SMTPUTF8 BODY=8BITMIME SIZE=7", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{size: 7, body: "8BITMIME", smtputf8: true}},
		{name: "several spaces between params", arg: "FROM:<a@b>   SIZE=7   BODY=7BIT", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{size: 7, body: "7BIT"}},
		{name: "SIZE without value", arg: "FROM:<a@b> SIZE", esmtp: true, wantErr: errBadParam},
		{name: "SIZE empty", arg: "FROM:<a@b> SIZE=", esmtp: true, wantErr: errBadParam},
		{name: "SIZE negative", arg: "FROM:<a@b> SIZE=-1", esmtp: true, wantErr: errBadParam},
		{name: "SIZE plus sign", arg: "FROM:<a@b> SIZE=+1", esmtp: true, wantErr: errBadParam},
		{name: "SIZE not a number", arg: "FROM:<a@b> SIZE=ten", esmtp: true, wantErr: errBadParam},
		{name: "SIZE hex", arg: "FROM:<a@b> SIZE=0x10", esmtp: true, wantErr: errBadParam},
		{name: "SIZE twenty one digits", arg: "FROM:<a@b> SIZE=000000000000000000001", esmtp: true, wantErr: errBadParam},
		{name: "SIZE twice", arg: "FROM:<a@b> SIZE=1 SIZE=2", esmtp: true, wantErr: errBadParam},
		{name: "SIZE twice any case", arg: "FROM:<a@b> SIZE=1 size=1", esmtp: true, wantErr: errBadParam},
		{name: "BODY unknown", arg: "FROM:<a@b> BODY=9BIT", esmtp: true, wantErr: errBadParam},
		{name: "BODY BINARYMIME", arg: "FROM:<a@b> BODY=binarymime", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{body: "BINARYMIME"}},
		{name: "BODY without value", arg: "FROM:<a@b> BODY", esmtp: true, wantErr: errBadParam},
		{name: "BODY twice", arg: "FROM:<a@b> BODY=7BIT BODY=8BITMIME", esmtp: true, wantErr: errBadParam},
		{name: "SMTPUTF8 with value", arg: "FROM:<a@b> SMTPUTF8=yes", esmtp: true, wantErr: errBadParam},
		{name: "SMTPUTF8 with empty value", arg: "FROM:<a@b> SMTPUTF8=", esmtp: true, wantErr: errBadParam},
		{name: "SMTPUTF8 twice", arg: "FROM:<a@b> SMTPUTF8 SMTPUTF8", esmtp: true, wantErr: errBadParam},
		{name: "unknown param", arg: "FROM:<a@b> AUTH=<>", esmtp: true, wantErr: errUnknownParam},

		// DSN (RFC 3461 §4.3, §4.4).
		{name: "RET FULL", arg: "FROM:<a@b> RET=FULL", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{ret: "FULL"}},
		{name: "RET hdrs any case", arg: "FROM:<a@b> ret=Hdrs", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{ret: "HDRS"}},
		{name: "ENVID plain", arg: "FROM:<a@b> ENVID=QQ314159", esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{envID: "QQ314159"}},
		{name: "ENVID xtext", arg: "FROM:<> ENVID=a+2Bb+3Dc+20d RET=HDRS", esmtp: true, wantNull: true, wantParams: mailParams{envID: "a+b=c d", ret: "HDRS"}},
		{name: "ENVID 100 octets", arg: "FROM:<a@b> ENVID=" + strings.Repeat("x", 100), esmtp: true, want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: mailParams{envID: strings.Repeat("x", 100)}},
		{name: "ENVID 101 octets", arg: "FROM:<a@b> ENVID=" + strings.Repeat("x", 101), esmtp: true, wantErr: errBadParam},
		{name: "RET unknown", arg: "FROM:<a@b> RET=ALL", esmtp: true, wantErr: errBadParam},
		{name: "RET without value", arg: "FROM:<a@b> RET", esmtp: true, wantErr: errBadParam},
		{name: "RET twice", arg: "FROM:<a@b> RET=FULL RET=HDRS", esmtp: true, wantErr: errBadParam},
		{name: "ENVID empty", arg: "FROM:<a@b> ENVID=", esmtp: true, wantErr: errBadParam},
		{name: "ENVID without value", arg: "FROM:<a@b> ENVID", esmtp: true, wantErr: errBadParam},
		{name: "ENVID bare plus", arg: "FROM:<a@b> ENVID=a+b", esmtp: true, wantErr: errBadParam},
		{name: "ENVID plus at end", arg: "FROM:<a@b> ENVID=ab+2", esmtp: true, wantErr: errBadParam},
		{name: "ENVID not hex", arg: "FROM:<a@b> ENVID=a+ZZ", esmtp: true, wantErr: errBadParam},
		{name: "ENVID raw equals", arg: "FROM:<a@b> ENVID=a=b", esmtp: true, wantErr: errBadParam},
		{name: "ENVID non-ASCII", arg: "FROM:<a@b> ENVID=caf\u00e9", esmtp: true, wantErr: errBadParam},
		{name: "ENVID decodes to non-ASCII", arg: "FROM:<a@b> ENVID=caf+C3+A9", esmtp: true, wantErr: errBadParam},
		{name: "ENVID twice", arg: "FROM:<a@b> ENVID=1 ENVID=1", esmtp: true, wantErr: errBadParam},
		{name: "RET after HELO", arg: "FROM:<a@b> RET=FULL", wantErr: errUnknownParam},
		{name: "unknown param after known", arg: "FROM:<a@b> SIZE=1 AUTH=<>", esmtp: true, wantErr: errUnknownParam},
		{name: "param with bad keyword", arg: "FROM:<a@b> -X=1", esmtp: true, wantErr: errUnknownParam},
		{name: "param with empty keyword", arg: "FROM:<a@b> =1", esmtp: true, wantErr: errUnknownParam},
		{name: "SIZE after HELO", arg: "FROM:<a@b> SIZE=1", wantErr: errUnknownParam},
		{name: "SMTPUTF8 after HELO", arg: "FROM:<a@b> SMTPUTF8", wantErr: errUnknownParam},
		{name: "param without space", arg: "FROM:<a@b>SIZE=1", esmtp: true, wantErr: errSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			from, null, params, err := parseMail(tc.arg, tc.esmtp, false)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("parseMail(%q, %v) error = %v, want %v", tc.arg, tc.esmtp, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if from != tc.want {
				t.Errorf("parseMail(%q) address = %+v, want %+v", tc.arg, from, tc.want)
			}
			if null != tc.wantNull {
				t.Errorf("parseMail(%q) null = %v, want %v", tc.arg, null, tc.wantNull)
			}
			if params != tc.wantParams {
				t.Errorf("parseMail(%q) params = %+v, want %+v", tc.arg, params, tc.wantParams)
			}
		})
	}
}

func TestParseRcpt(t *testing.T) {
	tests := []struct {
		name       string
		arg        string
		helo       bool // the session began with HELO, not EHLO
		want       address
		wantParams rcptParams
		wantErr    error
	}{
		{name: "simple", arg: "TO:<alice@example.org>", want: address{local: "alice", domain: "example.org", raw: "alice@example.org"}},
		{name: "lower case keyword", arg: "to:<alice@example.org>", want: address{local: "alice", domain: "example.org", raw: "alice@example.org"}},
		{name: "space after colon", arg: "TO: <alice@example.org>", want: address{local: "alice", domain: "example.org", raw: "alice@example.org"}},
		{name: "source route", arg: "TO:<@relay.test:alice@example.org>", want: address{local: "alice", domain: "example.org", raw: "alice@example.org"}},
		{name: "quoted", arg: `TO:<"al ice"@example.org>`, want: address{local: "al ice", domain: "example.org", raw: `"al ice"@example.org`}},
		{name: "UTF-8", arg: "TO:<ålice@exämple.org>", want: address{local: "ålice", domain: "exämple.org", raw: "ålice@exämple.org"}},
		{name: "address literal", arg: "TO:<alice@[IPv6:::1]>", want: address{local: "alice", domain: "[IPv6:::1]", raw: "alice@[IPv6:::1]"}},

		// The special recipient without a domain (RFC 5321 §4.1.1.3).
		{name: "postmaster", arg: "TO:<postmaster>", want: address{local: "postmaster", raw: "postmaster"}},
		{name: "postmaster upper case", arg: "TO:<POSTMASTER>", want: address{local: "postmaster", raw: "POSTMASTER"}},
		{name: "postmaster mixed case", arg: "TO: <PostMaster>", want: address{local: "postmaster", raw: "PostMaster"}},
		{name: "postmaster with domain", arg: "TO:<Postmaster@example.org>", want: address{local: "Postmaster", domain: "example.org", raw: "Postmaster@example.org"}},
		{name: "postmaster with junk", arg: "TO:<postmaster>x", wantErr: errSyntax},
		{name: "postmaster with param", arg: "TO:<postmaster> NOTIFY=NEVER", want: address{local: "postmaster", raw: "postmaster"}, wantParams: rcptParams{notify: notifyNever}},
		{name: "other local part without domain", arg: "TO:<alice>", wantErr: errSyntax},
		{name: "postmaster prefix without domain", arg: "TO:<postmasters>", wantErr: errSyntax},

		// Errors.
		{name: "null path", arg: "TO:<>", wantErr: errNullPath},
		{name: "null path after space", arg: "TO: <>", wantErr: errNullPath},
		{name: "param after HELO", arg: "TO:<alice@example.org> NOTIFY=SUCCESS", helo: true, wantErr: errUnknownParam},
		{name: "SIZE is not a RCPT param", arg: "TO:<alice@example.org> SIZE=1", wantErr: errUnknownParam},
		{name: "trailing space is no param", arg: "TO:<alice@example.org> ", want: address{local: "alice", domain: "example.org", raw: "alice@example.org"}},
		{name: "FROM keyword", arg: "FROM:<alice@example.org>", wantErr: errSyntax},
		{name: "no brackets", arg: "TO:alice@example.org", wantErr: errSyntax},
		{name: "double closing bracket", arg: "TO:<a@b>>", wantErr: errSyntax},
		{name: "empty domain", arg: "TO:<a@>", wantErr: errSyntax},
		{name: "empty local part", arg: "TO:<@b>", wantErr: errSyntax},
		{name: "space in local part", arg: "TO:<a b@c>", wantErr: errSyntax},
		{name: "leading hyphen", arg: "TO:<a@-b.c>", wantErr: errSyntax},
		{name: "invalid UTF-8", arg: "TO:<\xc3@b>", wantErr: errSyntax},
		{name: "empty", arg: "", wantErr: errSyntax},

		// DSN (RFC 3461 §4.1, §4.2).
		{name: "NOTIFY NEVER", arg: "TO:<a@b> NOTIFY=NEVER", want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: rcptParams{notify: notifyNever}},
		{name: "NOTIFY list any case", arg: "TO:<a@b> notify=delay,Success", want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: rcptParams{notify: notifyDelay | notifySuccess}},
		{name: "NOTIFY all three", arg: "TO:<a@b> NOTIFY=SUCCESS,FAILURE,DELAY", want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: rcptParams{notify: notifySuccess | notifyFailure | notifyDelay}},
		{name: "ORCPT type in upper case", arg: "TO:<a@b> ORCPT=RFC822;x@y", want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: rcptParams{orcptType: "rfc822", orcpt: "x@y"}},
		{name: "ORCPT", arg: "TO:<a@b> ORCPT=rfc822;Alice@Example.org", want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: rcptParams{orcptType: "rfc822", orcpt: "Alice@Example.org"}},
		{name: "ORCPT xtext", arg: "TO:<a@b> ORCPT=rfc822;a+2Bb+3Dc@x NOTIFY=FAILURE", want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: rcptParams{notify: notifyFailure, orcptType: "rfc822", orcpt: "a+b=c@x"}},
		{name: "ORCPT utf-8 type", arg: "TO:<a@b> ORCPT=utf-8;j+C3+B8rn@x", want: address{local: "a", domain: "b", raw: "a@b"}, wantParams: rcptParams{orcptType: "utf-8", orcpt: "jørn@x"}},
		{name: "NOTIFY NEVER with another", arg: "TO:<a@b> NOTIFY=NEVER,SUCCESS", wantErr: errBadParam},
		{name: "NOTIFY repeated keyword", arg: "TO:<a@b> NOTIFY=SUCCESS,SUCCESS", wantErr: errBadParam},
		{name: "NOTIFY unknown", arg: "TO:<a@b> NOTIFY=ALWAYS", wantErr: errBadParam},
		{name: "NOTIFY empty", arg: "TO:<a@b> NOTIFY=", wantErr: errBadParam},
		{name: "NOTIFY empty item", arg: "TO:<a@b> NOTIFY=SUCCESS,", wantErr: errBadParam},
		{name: "NOTIFY twice", arg: "TO:<a@b> NOTIFY=SUCCESS NOTIFY=DELAY", wantErr: errBadParam},
		{name: "ORCPT without type", arg: "TO:<a@b> ORCPT=a@b", wantErr: errBadParam},
		{name: "ORCPT empty type", arg: "TO:<a@b> ORCPT=;a@b", wantErr: errBadParam},
		{name: "ORCPT empty address", arg: "TO:<a@b> ORCPT=rfc822;", wantErr: errBadParam},
		{name: "ORCPT bad type", arg: "TO:<a@b> ORCPT=rfc(822);a@b", wantErr: errBadParam},
		{name: "ORCPT malformed xtext", arg: "TO:<a@b> ORCPT=rfc822;a+4@b", wantErr: errBadParam},
		{name: "ORCPT decodes to a control", arg: "TO:<a@b> ORCPT=rfc822;a+0Ab@c", wantErr: errBadParam},
		{name: "ORCPT rfc822 not ASCII", arg: "TO:<a@b> ORCPT=rfc822;j+C3+B8rn@x", wantErr: errBadParam},
		{name: "ORCPT over 500 octets", arg: "TO:<a@b> ORCPT=rfc822;" + strings.Repeat("x", 494), wantErr: errBadParam},
		{name: "ORCPT twice", arg: "TO:<a@b> ORCPT=rfc822;a@b ORCPT=rfc822;a@b", wantErr: errBadParam},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			to, params, err := parseRcpt(tc.arg, !tc.helo, false)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("parseRcpt(%q) error = %v, want %v", tc.arg, err, tc.wantErr)
			}
			if to != tc.want || params != tc.wantParams {
				t.Errorf("parseRcpt(%q) = %+v, %+v; want %+v, %+v", tc.arg, to, params, tc.want, tc.wantParams)
			}
		})
	}
}

func TestParseBDAT(t *testing.T) {
	tests := []struct {
		arg      string
		wantSize int64
		wantLast bool
		wantErr  bool
	}{
		{arg: "0", wantSize: 0},
		{arg: "1", wantSize: 1},
		{arg: "1048576", wantSize: 1 << 20},
		{arg: "10 LAST", wantSize: 10, wantLast: true},
		{arg: "0 last", wantSize: 0, wantLast: true},
		{arg: "007  LAST", wantSize: 7, wantLast: true},
		{arg: "9223372036854775807", wantSize: 1<<63 - 1},
		{arg: "9223372036854775808", wantErr: true}, // over int64
		{arg: "", wantErr: true},
		{arg: "LAST", wantErr: true},
		{arg: "-1", wantErr: true},
		{arg: "+1", wantErr: true},
		{arg: "1e3", wantErr: true},
		{arg: "10 FIRST", wantErr: true},
		{arg: "10 LAST x", wantErr: true},
		{arg: "0x10", wantErr: true},
	}
	for _, tc := range tests {
		size, last, err := parseBDAT(tc.arg)
		if (err != nil) != tc.wantErr || err == nil && (size != tc.wantSize || last != tc.wantLast) {
			t.Errorf("parseBDAT(%q) = %d, %v, %v; want %d, %v, error %v", tc.arg, size, last, err, tc.wantSize, tc.wantLast, tc.wantErr)
		}
	}
}

func TestDecodeXtext(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "", want: ""},
		{in: "abc", want: "abc"},
		{in: "+2B", want: "+"},
		{in: "a+3Db", want: "a=b"},
		{in: "+20+7E", want: " ~"},
		{in: "+2b", want: "+"}, // lower case hex, taken though the RFC writes upper case
		{in: "!~\\\"", want: "!~\\\""},
		{in: "+", wantErr: true},
		{in: "+2", wantErr: true},
		{in: "a+G0", wantErr: true},
		{in: "=", wantErr: true},
		{in: "a b", wantErr: true},
		{in: "\x7f", wantErr: true},
		{in: "\xc3\xa9", wantErr: true},
	}
	for _, tc := range tests {
		got, err := decodeXtext(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("decodeXtext(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestAddressASCII(t *testing.T) {
	tests := []struct {
		name string
		arg  string
		want bool
	}{
		{name: "ASCII", arg: "TO:<alice@example.org>", want: true},
		{name: "ASCII quoted", arg: `TO:<"a b"@example.org>`, want: true},
		{name: "ASCII literal", arg: "TO:<a@[192.0.2.1]>", want: true},
		{name: "postmaster", arg: "TO:<postmaster>", want: true},
		{name: "UTF-8 local part", arg: "TO:<josé@example.org>", want: false},
		{name: "UTF-8 domain", arg: "TO:<jose@exámple.org>", want: false},
		{name: "UTF-8 in quotes", arg: `TO:<"jo sé"@example.org>`, want: false},
		{name: "UTF-8 only in source route", arg: "TO:<@rélay.test:jose@example.org>", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, _, err := parseRcpt(tc.arg, true, false)
			if err != nil {
				t.Fatalf("parseRcpt(%q): %v", tc.arg, err)
			}
			if got := a.ascii(); got != tc.want {
				t.Errorf("address %q ascii() = %v, want %v", a.raw, got, tc.want)
			}
		})
	}
}

// checkAddress checks the invariants of an address the parser accepted from
// arg: valid UTF-8, no ASCII control bytes, raw found in arg, raw made of the
// local part and the domain, and raw parsing again to the same address.
func checkAddress(t *testing.T, arg string, a address) {
	t.Helper()
	if !utf8.ValidString(a.raw) || !utf8.ValidString(a.local) || !utf8.ValidString(a.domain) {
		t.Fatalf("address from %q is not valid UTF-8: %+v", arg, a)
	}
	for i := 0; i < len(a.raw); i++ {
		if c := a.raw[i]; c < 0x20 || c == 0x7f {
			t.Fatalf("address from %q holds control byte %#x: %q", arg, c, a.raw)
		}
	}
	if !strings.Contains(arg, a.raw) {
		t.Fatalf("raw %q is not part of %q", a.raw, arg)
	}
	if a.domain == "" {
		if a.local != "postmaster" || !strings.EqualFold(a.raw, "postmaster") {
			t.Fatalf("address from %q has no domain but is %+v", arg, a)
		}
		return
	}
	if !strings.HasSuffix(a.raw, "@"+a.domain) {
		t.Fatalf("raw %q does not end with @%q", a.raw, a.domain)
	}
	if !strings.HasPrefix(a.raw, `"`) && a.raw != a.local+"@"+a.domain {
		t.Fatalf("unquoted raw %q is not local %q @ domain %q", a.raw, a.local, a.domain)
	}
	again, _, err := parseRcpt("TO:<"+a.raw+">", true, false)
	if err != nil {
		t.Fatalf("raw %q from %q does not parse again: %v", a.raw, arg, err)
	}
	if again != a {
		t.Fatalf("raw %q parses again to %+v, want %+v", a.raw, again, a)
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"MAIL FROM:<bob@example.net> SIZE=100 BODY=8BITMIME SMTPUTF8",
		"mail from: <>",
		"MAIL FROM:<@r1.test,@r2.test:a@[IPv6:2001:db8::1]>",
		`MAIL FROM:<"a\"b\\c"@[x-tag:v]>`,
		"RCPT TO:<PostMaster>",
		"RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>",
		"RCPT TO:<a@[192.0.2.1]> NOTIFY=NEVER",
		"RCPT TO:<a@b> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bx@b",
		"RCPT TO:<a@b> ORCPT=utf-8;j+C3+B8rn@x",
		"MAIL FROM:<a@b> RET=HDRS ENVID=id+20with+2Bplus",
		"MAIL FROM:<> ENVID=a+2",
		"BDAT 1024",
		"BDAT 0 LAST",
		"BDAT 99999999999999999999 LAST",
		"EHLO client.test",
		"HELO [IPv6:::1]",
		"DATA",
		"GET / HTTP/1.1",
		"MAIL FROM:<a@b>>",
		"\x00\xff\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		verb, arg := parseCommand(line)
		if strings.Contains(verb, " ") {
			t.Fatalf("verb %q of %q holds a space", verb, line)
		}
		if strings.Trim(arg, " \t") != arg {
			t.Fatalf("argument %q of %q has white space around it", arg, line)
		}
		if !strings.Contains(line, arg) {
			t.Fatalf("argument %q is not part of %q", arg, line)
		}
		if first, _, _ := strings.Cut(line, " "); isASCII(first) && verb != strings.ToUpper(first) {
			t.Fatalf("verb of %q = %q, want %q", line, verb, strings.ToUpper(first))
		}

		if helo, err := parseHelo(arg); err == nil {
			if helo != arg || helo == "" || strings.ContainsAny(helo, " \t") || !printable(helo) {
				t.Fatalf("parseHelo(%q) accepted %q", arg, helo)
			}
		}

		for _, esmtp := range []bool{false, true} {
			from, null, params, err := parseMail(arg, esmtp, false)
			if err != nil {
				continue
			}
			if null {
				if from != (address{}) {
					t.Fatalf("parseMail(%q): null path with address %+v", arg, from)
				}
			} else {
				checkAddress(t, arg, from)
				if from.domain == "" {
					t.Fatalf("parseMail(%q): sender %+v without domain", arg, from)
				}
			}
			if !esmtp && params != (mailParams{}) {
				t.Fatalf("parseMail(%q) after HELO accepted params %+v", arg, params)
			}
			if params.size < 0 || params.body != "" && params.body != "7BIT" && params.body != "8BITMIME" && params.body != "BINARYMIME" ||
				params.ret != "" && params.ret != "FULL" && params.ret != "HDRS" ||
				len(params.envID) > maxEnvIDLen || !isASCII(params.envID) || !printable(params.envID) {
				t.Fatalf("parseMail(%q) params = %+v", arg, params)
			}
		}

		if size, last, err := parseBDAT(arg); err == nil {
			if size < 0 || last != strings.HasSuffix(strings.ToUpper(arg), "LAST") {
				t.Fatalf("parseBDAT(%q) = %d, %v", arg, size, last)
			}
		}

		if to, params, err := parseRcpt(arg, true, false); err == nil {
			checkAddress(t, arg, to)
			checkMailboxName(t, to.local, mailboxName(to.local))
			if params.notify&notifyNever != 0 && params.notify != notifyNever {
				t.Fatalf("parseRcpt(%q): NOTIFY=NEVER with others: %+v", arg, params)
			}
			if (params.orcptType == "") != (params.orcpt == "") || !printable(params.orcpt) {
				t.Fatalf("parseRcpt(%q) ORCPT = %q;%q", arg, params.orcptType, params.orcpt)
			}
		}
	})
}

// TestLenientParams checks Config.TestMode's parsing: unknown parameters
// are ignored (also after HELO), known ones still checked.
func TestLenientParams(t *testing.T) {
	_, _, params, err := parseMail("FROM:<a@b.c> SIZE=10 X-TRACKING=abc AUTH=<>", true, true)
	if err != nil || params.size != 10 {
		t.Errorf("lenient MAIL: params %+v, err %v", params, err)
	}
	if _, _, _, err := parseMail("FROM:<a@b.c> X-TRACKING=abc", false, true); err != nil {
		t.Errorf("lenient MAIL after HELO: %v", err)
	}
	if _, _, _, err := parseMail("FROM:<a@b.c> SIZE=x", true, true); !errors.Is(err, errBadParam) {
		t.Errorf("lenient MAIL with SIZE=x: err %v, want errBadParam", err)
	}
	if _, _, err := parseRcpt("TO:<a@b.c> NOTIFY=NEVER ORCPT=rfc822;a@b.c X-FOO=1", false, true); err != nil {
		t.Errorf("lenient RCPT: %v", err)
	}
	if _, _, err := parseRcpt("TO:<a@b.c> NOTIFY=SOMETIMES", true, true); !errors.Is(err, errBadParam) {
		t.Errorf("lenient RCPT with a bad NOTIFY: err %v, want errBadParam", err)
	}
	if _, _, err := parseRcpt("TO:<a@b.c> NOTIFY=NEVER", false, false); !errors.Is(err, errUnknownParam) {
		t.Errorf("strict RCPT with NOTIFY after HELO: err %v, want errUnknownParam", err)
	}
}
