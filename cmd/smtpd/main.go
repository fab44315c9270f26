// Command smtpd is an SMTP server that stores mail in Maildirs: a local mail
// sink, a server to embed in tests, and a protocol lesson. Run it with -h for
// its flags; see the README for a tour.
package main

import (
	"os"

	"github.com/tpe-protos/smtpd/internal/cli"
)

func main() { os.Exit(cli.SmtpdMain()) }
