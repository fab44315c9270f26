// Command smtpplay plays a scripted SMTP dialogue against a server and prints
// the transcript in the colors of smtpd's trace; with -step it goes one
// exchange at a time, for a lesson. Run it with -h for the dialogue format.
package main

import (
	"os"

	"github.com/tpe-protos/smtpd/internal/cli"
)

func main() { os.Exit(cli.SmtpplayMain()) }
