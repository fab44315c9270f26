package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tpe-protos/smtpd"
)

// watchFlags are the command line of "metrics_client watch".
type watchFlags struct {
	on       bool
	interval time.Duration
	count    int
}

// parse parses the arguments after "watch"; done reports that the command
// must exit with code (after -h or a bad flag).
func (w *watchFlags) parse(args []string, stdout, stderr io.Writer) (code int, done bool) {
	fs := flag.NewFlagSet("metrics_client watch", flag.ContinueOnError)
	fs.DurationVar(&w.interval, "interval", time.Second, "time between samples")
	fs.IntVar(&w.count, "count", 0, "stop after this many samples (0: at Ctrl-C)")
	help := "Shows the server's concurrent and historical connections, bytes transferred and messages accepted:\n" +
		"on a terminal one screen updated in place, otherwise one line per sample."
	if code, done := parseCommandLine(fs, args, stdout, stderr, "", help); done {
		return code, true
	}
	switch {
	case w.interval <= 0:
		return usageError(stderr, fs.Name(), fmt.Errorf("-interval %v: must be positive", w.interval)), true
	case w.count < 0:
		return usageError(stderr, fs.Name(), fmt.Errorf("-count %d: must not be negative", w.count)), true
	}
	w.on = true
	return 0, false
}

// sample is what watch shows of the server at one time.
type sample struct {
	at                                      time.Time
	concurrent, historical, bytes, messages uint64
}

// take asks the server for a sample.
func (m *managed) take(ctx context.Context) (sample, error) {
	s := sample{at: time.Now()}
	for _, q := range []struct {
		cmd smtpd.Command
		v   *uint64
	}{
		{smtpd.CmdConcurrentConnections, &s.concurrent},
		{smtpd.CmdHistoricalConnections, &s.historical},
		{smtpd.CmdBytesTransferred, &s.bytes},
		{smtpd.CmdMessages, &s.messages},
	} {
		v, err := m.c.Do(ctx, q.cmd, 0)
		if err != nil {
			return s, err
		}
		*q.v = v
	}
	return s, nil
}

// runWatch shows a sample every interval until Ctrl-C (or SIGTERM), or
// until count samples were shown: the live display of a stress test. On a
// terminal the same screen is redrawn in place; piped, each sample is one
// line, for a log or a plot. A server that does not answer is reported and
// asked again at the next sample; one that refuses ends the watch
// (status 1).
func runWatch(ctx context.Context, m *managed, w watchFlags, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	screen := &watchScreen{w: stdout, addr: m.addr, interval: w.interval}
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	var last sample
	for n := 1; ; n++ {
		s, err := m.take(ctx)
		if err != nil {
			// Keep the last values on screen, and say they are old.
			last.at, s = s.at, last
		}
		last = s
		var statusErr *smtpd.StatusError
		switch {
		case ctx.Err() != nil:
			return exitOK
		case errors.As(err, &statusErr):
			fmt.Fprintln(stderr, m.explainStatus(statusErr))
			return exitFailure
		case err != nil && !errors.Is(err, smtpd.ErrTimeout):
			fmt.Fprintf(stderr, "metrics_client: %v\n", err)
			return exitFailure
		}
		if isTerminal(stdout) {
			screen.draw(s, err)
		} else {
			writeSampleLine(stdout, s, m.addr, w.interval, err)
		}
		if n == w.count {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		}
	}
}

// writeSampleLine writes a sample as one line, for a pipe:
// "15:04:05 concurrent=12 historical=345 bytes=67890 messages=3", or
// "15:04:05 no answer from 127.0.0.1:7030".
func writeSampleLine(w io.Writer, s sample, addr string, interval time.Duration, err error) {
	at := sampleTime(s.at, interval)
	if err != nil {
		fmt.Fprintf(w, "%s no answer from %s\n", at, addr)
		return
	}
	fmt.Fprintf(w, "%s concurrent=%d historical=%d bytes=%d messages=%d\n", at, s.concurrent, s.historical, s.bytes, s.messages)
}

// sampleTime formats the time of a sample: with milliseconds when samples
// come more often than once a second.
func sampleTime(t time.Time, interval time.Duration) string {
	if interval < time.Second {
		return t.Format("15:04:05.000")
	}
	return t.Format(time.TimeOnly)
}

// watchScreen draws samples on a terminal, each over the one before.
type watchScreen struct {
	w        io.Writer
	addr     string
	interval time.Duration
	lines    int // lines drawn last time, to go back up over
}

func (sc *watchScreen) draw(s sample, err error) {
	var b strings.Builder
	if sc.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dF", sc.lines) // to the start of the first line drawn
	}
	lines := []string{
		fmt.Sprintf("smtpd at %s, every %v (Ctrl-C to stop)", sc.addr, sc.interval),
		"",
		fmt.Sprintf("  concurrent connections %12d", s.concurrent),
		fmt.Sprintf("  historical connections %12d", s.historical),
		fmt.Sprintf("  bytes transferred      %12d", s.bytes),
		fmt.Sprintf("  messages accepted      %12d", s.messages),
		"",
		"  " + sampleTime(s.at, sc.interval),
	}
	if err != nil {
		lines[len(lines)-1] += fmt.Sprintf("  no answer from %s: the values above are older", sc.addr)
	}
	for _, line := range lines {
		b.WriteString("\x1b[2K") // erase what the line held before
		b.WriteString(line)
		b.WriteString("\n")
	}
	sc.lines = len(lines)
	io.WriteString(sc.w, b.String())
}
