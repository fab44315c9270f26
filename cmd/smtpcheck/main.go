// Command smtpcheck checks an SMTP server against RFC 5321 and its
// extensions, and against SMTP smuggling and hostile input: a suite of
// scripted dialogues at four levels (basic, rfc, robustness, tls), with a
// line per case, the exchange that failed and why, a score per level, and
// JSON or JUnit XML for autograders. Run it with -h for the flags.
package main

import (
	"os"

	"github.com/tpe-protos/smtpd/internal/check"
)

func main() { os.Exit(check.Main()) }
