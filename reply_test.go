package smtpd

import (
	"go/ast"
	goparser "go/parser"
	"go/token"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestReplyAppendTo(t *testing.T) {
	tests := []struct {
		name  string
		reply reply
		want  string
	}{
		{name: "single line", reply: reply{code: 250, enh: "2.1.0", text: "Ok"}, want: "250 2.1.0 Ok\r\n"},
		{name: "single line without enhanced code", reply: reply{code: 220, text: "mx.test ESMTP smtpd"}, want: "220 mx.test ESMTP smtpd\r\n"},
		{name: "empty text", reply: reply{code: 250, enh: "2.0.0"}, want: "250 2.0.0 \r\n"},
		{name: "empty text without enhanced code", reply: reply{code: 354}, want: "354 \r\n"},
		{name: "multi-line", reply: reply{code: 214, enh: "2.0.0", text: "one\ntwo\nthree"}, want: "214-2.0.0 one\r\n214-2.0.0 two\r\n214 2.0.0 three\r\n"},
		{name: "multi-line without enhanced code", reply: reply{code: 250, text: "mx.test\nPIPELINING\nSIZE 100"}, want: "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n"},
		{name: "empty middle line", reply: reply{code: 250, text: "a\n\nb"}, want: "250-a\r\n250-\r\n250 b\r\n"},
		{name: "trailing newline makes an empty last line", reply: reply{code: 250, text: "a\n"}, want: "250-a\r\n250 \r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("previous\r\n")
			got := tc.reply.appendTo(prefix)
			if string(got) != "previous\r\n"+tc.want {
				t.Errorf("appendTo = %q, want %q", got, "previous\r\n"+tc.want)
			}
			wantString := strings.TrimSuffix(strings.ReplaceAll(tc.want, "\r\n", "\n"), "\n")
			if s := tc.reply.String(); s != wantString {
				t.Errorf("String() = %q, want %q", s, wantString)
			}
		})
	}
}

// allReplies lists every reply of reply.go by name: the canned ones, and
// those made by a function (called with a sample argument).
func allReplies() map[string]reply {
	return map[string]reply{
		"replyOK":                   replyOK,
		"replySenderOK":             replySenderOK,
		"replyRecipientOK":          replyRecipientOK,
		"replyRecipientAgain":       replyRecipientAgain,
		"replyStartData":            replyStartData,
		"replyBye":                  replyBye,
		"replyVRFY":                 replyVRFY,
		"replyHelp":                 replyHelp,
		"replyUnknownCommand":       replyUnknownCommand,
		"replyLineTooLong":          replyLineTooLong,
		"replyEmptyLine":            replyEmptyLine,
		"replyHTTP":                 replyHTTP,
		"replyNotImplemented":       replyNotImplemented,
		"replySyntaxHELO":           replySyntaxHELO,
		"replySyntaxEHLO":           replySyntaxEHLO,
		"replySyntaxMAIL":           replySyntaxMAIL,
		"replySyntaxRCPT":           replySyntaxRCPT,
		"replySyntaxVRFY":           replySyntaxVRFY,
		"replyNoArgument":           replyNoArgument,
		"replyNeedHELO":             replyNeedHELO,
		"replyNeedMAIL":             replyNeedMAIL,
		"replyNeedRCPT":             replyNeedRCPT,
		"replyNestedMAIL":           replyNestedMAIL,
		"replyTooBig":               replyTooBig,
		"replyTooManyRcpts":         replyTooManyRcpts,
		"replyDomainNotLocal":       replyDomainNotLocal,
		"replyNeedSMTPUTF8":         replyNeedSMTPUTF8,
		"replyNullRecipient":        replyNullRecipient,
		"replyUnknownParameter":     replyUnknownParameter,
		"replyBadParameter":         replyBadParameter,
		"replyLocalError":           replyLocalError,
		"replyBareLF":               replyBareLF,
		"replyBareLFData":           replyBareLFData,
		"replyFilterFailed":         replyFilterFailed,
		"replyFilterTooBig":         replyFilterTooBig,
		"replyFilterRejected":       replyFilterRejected("spam"),
		"replyGreeting":             replyGreeting("mx.test"),
		"replyTooManyErrors":        replyTooManyErrors("mx.test"),
		"replyIdleTimeout":          replyIdleTimeout("mx.test"),
		"replyShuttingDown":         replyShuttingDown("mx.test"),
		"replyTooManyConns":         replyTooManyConns("mx.test"),
		"replyQueued":               replyQueued("ABC234"),
		"replyReadyTLS":             replyReadyTLS,
		"replyTLSActive":            replyTLSActive,
		"replyTLSInTransaction":     replyTLSInTransaction,
		"replyAuthOK":               replyAuthOK,
		"replyAuthNeedsEHLO":        replyAuthNeedsEHLO,
		"replyAlreadyAuthenticated": replyAlreadyAuthenticated,
		"replyAuthInTransaction":    replyAuthInTransaction,
		"replySyntaxAUTH":           replySyntaxAUTH,
		"replyBadBase64":            replyBadBase64,
		"replyAuthCancelled":        replyAuthCancelled,
		"replyUnknownMechanism":     replyUnknownMechanism,
		"replyAuthFailed":           replyAuthFailed,
		"replyAuthTemporary":        replyAuthTemporary,
		"replyEncryptionRequired":   replyEncryptionRequired,
		"replyAuthRequired":         replyAuthRequired,
		"replyNeedSTARTTLS":         replyNeedSTARTTLS,
		"replyTooManyAuthFailures":  replyTooManyAuthFailures("mx.test"),
		"replyTooManyFromIP":        replyTooManyFromIP("mx.test"),
		"replySessionTimeout":       replySessionTimeout("mx.test"),
		"replyEarlyTalker":          replyEarlyTalker("mx.test"),
	}
}

// withoutEnhancedCode are the replies that may go without an enhanced status
// code: RFC 2034 §3 asks for one on every 2xx, 4xx and 5xx reply but the
// greeting (and the HELO/EHLO replies, built in session.go), and 354 is 3xx.
var withoutEnhancedCode = []string{"replyGreeting", "replyStartData"}

// TestAllRepliesListed checks that allReplies names every reply var and
// every reply-returning function that reply.go declares.
func TestAllRepliesListed(t *testing.T) {
	f, err := goparser.ParseFile(token.NewFileSet(), "reply.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.GenDecl:
			if d.Tok != token.VAR {
				continue
			}
			for _, spec := range d.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.CompositeLit); ok {
							if id, ok := lit.Type.(*ast.Ident); ok && id.Name == "reply" {
								declared = append(declared, name.Name)
							}
						}
					}
				}
			}
		case *ast.FuncDecl:
			if d.Recv != nil || d.Type.Results == nil || len(d.Type.Results.List) != 1 {
				continue
			}
			if id, ok := d.Type.Results.List[0].Type.(*ast.Ident); ok && id.Name == "reply" {
				declared = append(declared, d.Name.Name)
			}
		}
	}
	if len(declared) < 30 {
		t.Fatalf("found only %d replies in reply.go: %q", len(declared), declared)
	}
	listed := allReplies()
	for _, name := range declared {
		if _, ok := listed[name]; !ok {
			t.Errorf("reply.go declares %s, which allReplies does not list", name)
		}
	}
	for name := range listed {
		if !slices.Contains(declared, name) {
			t.Errorf("allReplies lists %s, which reply.go does not declare", name)
		}
	}
}

var enhancedCode = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

func TestRepliesWellFormed(t *testing.T) {
	for name, r := range allReplies() {
		t.Run(name, func(t *testing.T) {
			if r.code < 200 || r.code > 599 {
				t.Errorf("code = %d, want 2xx to 5xx", r.code)
			}
			switch {
			case r.enh == "":
				if !slices.Contains(withoutEnhancedCode, name) {
					t.Errorf("no enhanced code, want one (RFC 2034)")
				}
			case !enhancedCode.MatchString(r.enh):
				t.Errorf("enhanced code %q is not class.subject.detail", r.enh)
			case r.enh[0]-'0' != byte(r.code/100):
				t.Errorf("enhanced code %q is not of the class of %d", r.enh, r.code)
			}
			if strings.ContainsAny(r.text, "\r\x00") {
				t.Errorf("text %q holds CR or NUL", r.text)
			}
			for _, line := range strings.Split(r.text, "\n") {
				if line == "" {
					t.Errorf("text %q has an empty line", r.text)
				}
				if len(line) > 400 {
					t.Errorf("line %q is too long for a reply line", line)
				}
			}
			if r.close != (r.code == 421 || name == "replyBye" || name == "replyHTTP" || name == "replyEarlyTalker") {
				t.Errorf("close = %v for a %d reply", r.close, r.code)
			}
			wire := string(r.appendTo(nil))
			if !strings.HasSuffix(wire, "\r\n") || strings.Count(wire, "\r\n") != strings.Count(r.text, "\n")+1 {
				t.Errorf("wire form %q is not one CRLF-ended line per text line", wire)
			}
		})
	}
}

// TestEHLOReplyForm checks the wire form of a reply like the one the session
// builds inline for EHLO, which RFC 2034 §3 exempts from enhanced codes.
func TestEHLOReplyForm(t *testing.T) {
	r := reply{code: 250, text: "mx.test\nPIPELINING\nSIZE 10240000\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nHELP"}
	want := "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 HELP\r\n"
	if got := string(r.appendTo(nil)); got != want {
		t.Errorf("EHLO reply = %q, want %q", got, want)
	}
}
