// Command metrics_client queries and configures a running smtpd through its
// management protocol: with a command it prints one answer (for scripts);
// with none, it offers an interactive menu. Run it with -h for its flags.
package main

import (
	"os"

	"github.com/tpe-protos/smtpd/internal/cli"
)

func main() { os.Exit(cli.MetricsClientMain()) }
