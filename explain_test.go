package smtpd

import (
	"go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryReplyExplained checks that every reply the server can send (every
// reply{...} literal in the package's code) says what it means and which RFC
// defines it, for the explain mode. The only exception is replyHangUp, which
// has no code and is never sent.
func TestEveryReplyExplained(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	found := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := goparser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if id, ok := lit.Type.(*ast.Ident); !ok || id.Name != "reply" {
				return true
			}
			found++
			keys := map[string]string{}
			for _, elt := range lit.Elts {
				if kv, ok := elt.(*ast.KeyValueExpr); ok {
					from, to := fset.Position(kv.Value.Pos()).Offset, fset.Position(kv.Value.End()).Offset
					keys[kv.Key.(*ast.Ident).Name] = string(src[from:to])
				}
			}
			if _, hasCode := keys["code"]; !hasCode {
				return true // replyHangUp: nothing is sent
			}
			pos := fset.Position(lit.Pos())
			for _, key := range []string{"why", "rfc"} {
				if v := keys[key]; v == "" || v == `""` {
					t.Errorf("%s: reply %s has no %s", pos, keys["code"], key)
				}
			}
			if rfc := keys["rfc"]; rfc != "" && !strings.Contains(rfc, "RFC") {
				t.Errorf("%s: reply %s: rfc %s names no RFC", pos, keys["code"], rfc)
			}
			return true
		})
	}
	if found < 40 {
		t.Errorf("found only %d reply literals; is the scan still right?", found)
	}
}

// TestExplanationNamesEnhancedCode checks that the explanation of a reply
// with an enhanced code says what the code means.
func TestExplanationNamesEnhancedCode(t *testing.T) {
	for _, tc := range []struct {
		r    reply
		want string
	}{
		{replyNeedHELO, "5.5.1 = permanent failure, Invalid command, RFC 3463"},
		{replyTooManyRcpts, "4.5.3 = persistent transient failure, Too many recipients, RFC 3463"},
		{replyNeedSMTPUTF8, "5.6.7 = permanent failure, Non-ASCII addresses not permitted for that sender/recipient"},
		{replyStartData, "(RFC 5321 §4.1.1.4, §4.5.2)"},
	} {
		if got := tc.r.explanation(); !strings.Contains(got, tc.want) {
			t.Errorf("explanation of %q = %q, want it to contain %q", tc.r.String(), got, tc.want)
		}
	}
	for subject := range enhancedMeanings {
		if !strings.Contains(subject, ".") {
			t.Errorf("enhancedMeanings key %q is not subject.detail", subject)
		}
	}
}

// TestExplainReply checks that a reply is explained by the command it
// answers: a 503 to RCPT and to DATA mean different things, a 503 to MAIL
// has two reasons, and an unknown verb is explained as such.
func TestExplainReply(t *testing.T) {
	for _, tc := range []struct {
		command string
		code    int
		want    []string // parts of the explanation; none: ""
	}{
		{"RCPT TO:<a@b>", 503, []string{replyNeedMAIL.why, "(RFC 5321 §4.1.4, §3.3)"}},
		{"data", 503, []string{replyNeedRCPT.why}},
		{"MAIL FROM:<a@b>", 503, []string{replyNeedHELO.why, "; or: " + replyNestedMAIL.why}},
		{"", 220, []string{"the greeting", "RFC 5321 §3.1"}},
		{".", 250, []string{"safely on disk"}},
		{"XYZZY", 500, []string{replyUnknownCommand.why}},
		{"NOOP " + strings.Repeat("x", 600), 500, []string{replyLineTooLong.why}},
		{"QUIT", 221, []string{replyBye.why}},
		{"QUIT", 250, nil},
		{"XYZZY", 250, nil},
	} {
		got := ExplainReply(tc.command, tc.code)
		if len(tc.want) == 0 && got != "" {
			t.Errorf("ExplainReply(%.20q, %d) = %q, want nothing", tc.command, tc.code, got)
		}
		for _, part := range tc.want {
			if !strings.Contains(got, part) {
				t.Errorf("ExplainReply(%.20q, %d) = %q, want it to hold %q", tc.command, tc.code, got, part)
			}
		}
	}
}
