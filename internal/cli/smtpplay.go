package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tpe-protos/smtpd/client"
)

// SmtpplayMain runs the smtpplay command with the process's arguments.
func SmtpplayMain() int {
	return Smtpplay(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// Smtpplay plays a dialogue file (see client.Dialogue) against a server and
// prints the transcript, colored as the server's trace. With -step it waits
// for Enter before sending each batch: a lesson one exchange at a time. The
// exit status is 0 when every reply matched, 1 when one did not, 2 on a
// usage error.
func Smtpplay(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("smtpplay", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:2525", "SMTP server `host:port`")
	step := fs.Bool("step", false, "wait for Enter before sending each batch of lines")
	colorMode := fs.String("color", "auto", "colors: auto (a terminal without NO_COLOR), always or never")
	help := "The dialogue file has one step per line: C: line to send, R: \"raw Go-quoted bytes\", S: regexp a reply must match, CLOSED, or # comment."
	if code, done := parseCommandLine(fs, args, stdout, stderr, "FILE", help); done {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(stderr, fs.Name(), errors.New("one dialogue FILE is needed"))
	}
	colored, err := colorsOn(*colorMode, stdout)
	if err != nil {
		return usageError(stderr, fs.Name(), err)
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return usageError(stderr, fs.Name(), err)
	}
	d, err := client.ParseDialogue(f)
	f.Close()
	if err != nil {
		return usageError(stderr, fs.Name(), err)
	}
	c, err := client.Dial(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "smtpplay: %v\n", err)
		return exitFailure
	}
	defer c.Close()
	c.Transcript = client.ColorTranscript(stdout, colored)
	if *step {
		in := bufio.NewScanner(stdin)
		echoed := isTerminal(stdin) // the terminal shows the Enter
		d.Step = func() error {
			fmt.Fprint(stdout, "   [Enter sends the lines above]")
			more := in.Scan()
			if !echoed || !more {
				fmt.Fprintln(stdout)
			}
			if !more {
				return errors.New("end of input")
			}
			return nil
		}
	}
	if err := d.Play(c); err != nil {
		fmt.Fprintf(stderr, "smtpplay: %v\n", err)
		return exitFailure
	}
	return exitOK
}
