package cli

import (
	"context"
	"io"
	"os"
	"strings"
	"syscall"
)

// Embedding is what an smtpd run inside another program gets instead of
// what a process gets from the system.
type Embedding struct {
	// Dir is the directory relative file names in the flags (-d,
	// -maildir, -users, -tls-cert, …) are taken from: the program's
	// working directory is not the server's.
	Dir string
	// Signals carries the signals the process would receive: the first
	// SIGTERM or SIGINT shuts the server down gracefully, a second one
	// or a SIGKILL closes every session at once, SIGHUP reloads the
	// fault plan.
	Signals <-chan os.Signal
}

// SmtpdEmbedded runs the smtpd command inside the calling program, as
// Smtpd does but with e's directory and signals; it returns the exit
// status. A content filter (-filter) still runs in the program's working
// directory and environment.
func SmtpdEmbedded(ctx context.Context, e Embedding, args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hup := make(chan os.Signal, 1)
	kill := make(chan struct{})
	done := make(chan struct{})
	defer close(done)
	go routeSignals(e.Signals, cancel, hup, kill, done)
	return runSmtpd(ctx, args, strings.NewReader(""), stdout, stderr, hosting{dir: e.Dir, hup: hup, kill: kill})
}

// routeSignals acts on each signal as SmtpdMain's process would, until
// done is closed.
func routeSignals(signals <-chan os.Signal, stop context.CancelFunc, hup chan<- os.Signal, kill chan<- struct{}, done <-chan struct{}) {
	stopping := false
	for {
		select {
		case <-done:
			return
		case sig := <-signals:
			switch {
			case sig == syscall.SIGHUP:
				select {
				case hup <- sig:
				default: // a reload is pending already
				}
			case sig == syscall.SIGKILL || stopping && isStop(sig):
				stop()
				close(kill)
				return
			case isStop(sig):
				stopping = true
				stop()
			}
		}
	}
}

func isStop(sig os.Signal) bool { return sig == syscall.SIGTERM || sig == os.Interrupt }
