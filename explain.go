package smtpd

import (
	"slices"
	"strings"
)

// enhancedMeanings names the RFC 3463 subject.detail pairs the server uses
// (RFC 3463 §3; X.6.7 from RFC 6531, X.7.8 and X.7.11 from RFC 4954).
var enhancedMeanings = map[string]string{
	"0.0":  "Other undefined status",
	"1.0":  "Other address status",
	"1.3":  "Bad destination mailbox address syntax",
	"1.5":  "Destination address valid",
	"3.0":  "Other or undefined mail system status",
	"3.2":  "System not accepting network messages",
	"3.4":  "Message too big for system",
	"4.2":  "Bad connection",
	"5.0":  "Other or undefined protocol status",
	"5.1":  "Invalid command",
	"5.2":  "Syntax error",
	"5.3":  "Too many recipients",
	"5.4":  "Invalid command arguments",
	"6.0":  "Other or undefined media error",
	"6.7":  "Non-ASCII addresses not permitted for that sender/recipient",
	"7.0":  "Other or undefined security status",
	"7.1":  "Delivery not authorized, message refused",
	"7.8":  "Authentication credentials invalid",
	"7.11": "Encryption required for requested authentication mechanism",
}

// classMeanings are the first digits of enhanced codes (RFC 3463 §3.1).
var classMeanings = map[byte]string{'2': "success", '4': "persistent transient failure", '5': "permanent failure"}

// explanation is the line the explain mode prints after a reply: what it
// means, where it is defined, and what its enhanced code says.
func (r reply) explanation() string {
	var b strings.Builder
	b.WriteString(r.why)
	b.WriteString(" (")
	b.WriteString(r.rfc)
	if r.enh != "" {
		b.WriteString("; ")
		b.WriteString(r.enh)
		b.WriteString(" = ")
		b.WriteString(classMeanings[r.enh[0]])
		if _, detail, ok := strings.Cut(r.enh, "."); ok {
			if m := enhancedMeanings[detail]; m != "" {
				b.WriteString(", " + m)
			}
		}
		b.WriteString(", RFC 3463")
	}
	b.WriteString(")")
	return b.String()
}

// ExplainReply says what a reply with the given code means as the answer
// to command (a command line; "" for the greeting, "." for the end of the
// message data), in the words of the trace's explain mode (Config.Explain):
// a sentence and the RFC sections that define the reply. Where this server
// has several replies with that code for the command, it gives each; where
// it has none, it returns "". smtpcheck uses it to say why a reply was
// expected.
func ExplainReply(command string, code int) string {
	verb, _, _ := strings.Cut(command, " ")
	verb = strings.ToUpper(verb)
	candidates, known := answersTo[verb]
	if !known {
		candidates = []reply{replyUnknownCommand}
	} else if verb != "" && verb != "." {
		candidates = slices.Concat(candidates, []reply{replyLineTooLong})
	}
	var says []string
	for _, r := range candidates {
		s := r.why + " (" + r.rfc + ")"
		if r.code == code && !slices.Contains(says, s) {
			says = append(says, s)
		}
	}
	return strings.Join(says, "; or: ")
}

// answersTo lists the replies of the explain catalogue by the command they
// answer, for ExplainReply.
var answersTo = map[string][]reply{
	"":         {replyGreeting(""), replyTooManyConns(""), replyShuttingDown("")},
	"HELO":     {replySyntaxHELO},
	"EHLO":     {replySyntaxEHLO},
	"MAIL":     {replySenderOK, replySyntaxMAIL, replyNeedHELO, replyNestedMAIL, replyTooBig, replyUnknownParameter, replyBadParameter, replyNeedSMTPUTF8, replyAuthRequired},
	"RCPT":     {replyRecipientOK, replySyntaxRCPT, replyNeedMAIL, replyTooManyRcpts, replyDomainNotLocal, replyNullRecipient, replyUnknownParameter, replyBadParameter, replyNeedSMTPUTF8},
	"DATA":     {replyStartData, replyNeedRCPT, replyNoArgument},
	".":        {replyQueued(""), replyTooBig, replyLocalError, replyBareLFData},
	"RSET":     {replyOK, replyNoArgument},
	"NOOP":     {replyOK},
	"QUIT":     {replyBye, replyNoArgument},
	"VRFY":     {replyVRFY, replySyntaxVRFY},
	"HELP":     {replyHelp},
	"STARTTLS": {replyReadyTLS, replyTLSActive, replyTLSInTransaction},
	"AUTH":     {replyAuthOK, replyAuthNeedsEHLO, replyAlreadyAuthenticated, replyAuthInTransaction, replySyntaxAUTH, replyUnknownMechanism, replyAuthFailed, replyEncryptionRequired},
}
