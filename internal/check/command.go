package check

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/tpe-protos/smtpd/internal/cli"
)

// Main runs the smtpcheck command with the process's arguments. SIGINT,
// SIGTERM or SIGHUP (the terminal went away) stops the run, and so does
// SIGPIPE (the reader of the output went away, as "| head" does): the
// server it started is stopped too.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	defer stop()
	return Command(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// smtpcheckFlags are the command line of smtp
type smtpcheckFlags struct {
	addr, exec, ready string
	run, skip         string
	list              bool
	cases, maildir    string
	json              bool
	junit             string
	color             string
	timeout           time.Duration

	runRE, skipRE, readyRE *regexp.Regexp // compiled by check
}

func (f *smtpcheckFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "", "check the SMTP server at `host:port`")
	fs.StringVar(&f.exec, "exec", "", "start the server under test with this `command` ({port}: a free port), and stop it at the end")
	fs.StringVar(&f.ready, "ready", "", "with -exec: a `regexp` for the server's output whose first group is its port (or host:port)")
	fs.StringVar(&f.run, "run", "", "run only the cases whose level/name matches this `regexp`")
	fs.StringVar(&f.skip, "skip", "", "do not run the cases whose level/name matches this `regexp`")
	fs.BoolVar(&f.list, "list", false, "list the cases and exit")
	fs.StringVar(&f.cases, "cases", "", "add the cases (*.txtar) of this `directory`; one named as a built-in case replaces it")
	fs.StringVar(&f.maildir, "maildir", "", "the server's Maildir root `directory`: check that each message landed whole in DIR/<mailbox>/new/")
	fs.BoolVar(&f.json, "json", false, "write one JSON object per case instead of text")
	fs.StringVar(&f.junit, "junit", "", "also write a JUnit XML report to `file`")
	fs.StringVar(&f.color, "color", "auto", "colors: auto (a terminal without NO_COLOR), always or never")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for a connection, a reply or the server's start")
}

// check validates the flags and compiles their regexps.
func (f *smtpcheckFlags) check() error {
	var err error
	compile := func(name, expr string) *regexp.Regexp {
		if expr == "" || err != nil {
			return nil
		}
		re, e := regexp.Compile(expr)
		if e != nil {
			err = fmt.Errorf("-%s: %v", name, e)
		}
		return re
	}
	f.runRE, f.skipRE, f.readyRE = compile("run", f.run), compile("skip", f.skip), compile("ready", f.ready)
	switch {
	case err != nil:
		return err
	case f.list:
		return nil
	case (f.addr == "") == (f.exec == ""):
		return errors.New("give the server to check: -addr HOST:PORT or -exec 'COMMAND'")
	case f.ready != "" && f.exec == "":
		return errors.New("-ready goes with -exec")
	case f.readyRE != nil && f.readyRE.NumSubexp() == 0:
		return errors.New("-ready: the regexp needs a group, (…), for the port")
	case f.exec != "" && f.ready == "" && !strings.Contains(f.exec, "{port}"):
		return errors.New("-exec: put {port} where the server's port goes, or give -ready")
	case f.timeout <= 0:
		return fmt.Errorf("-timeout %v: must be positive", f.timeout)
	}
	return nil
}

// caseTimeout bounds one case: its every wait is bounded by -timeout, and
// a case waits a few dozen times at most.
func (f *smtpcheckFlags) caseTimeout() time.Duration { return 30 * f.timeout }

// Command runs the smtpcheck command: it checks an SMTP server against
// the built-in cases (and those of -cases) and reports. The exit status is
// 0 when no case failed, 1 when one did (or the run was stopped), 2 on a
// usage error.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("smtpcheck", flag.ContinueOnError)
	var f smtpcheckFlags
	f.register(fs)
	help := "Levels: basic (a first assignment), rfc (RFC 5321 and extensions), robustness (smuggling, hostile input), tls (STARTTLS).\n" +
		"Example: smtpcheck -exec './server -p {port}' -junit report.xml"
	if code, done := cli.ParseCommandLine(fs, args, stdout, stderr, "", help); done {
		return code
	}
	if err := f.check(); err != nil {
		return cli.UsageError(stderr, fs.Name(), err)
	}
	colored, err := cli.ColorsOn(f.color, stdout)
	if err != nil {
		return cli.UsageError(stderr, fs.Name(), err)
	}
	cases := Builtin()
	if f.cases != "" {
		extra, err := Load(f.cases)
		if err != nil {
			return cli.UsageError(stderr, fs.Name(), fmt.Errorf("-cases: %w", err))
		}
		cases = Merge(cases, extra)
	}
	cases = Select(cases, f.runRE, f.skipRE)
	if len(cases) == 0 {
		return cli.UsageError(stderr, fs.Name(), errors.New("no case selected (see -list)"))
	}
	if f.list {
		for _, c := range cases {
			fmt.Fprintf(stdout, "%-34s %s\n", c.ID(), c.Title)
		}
		return cli.ExitOK
	}
	addr := f.addr
	if f.exec != "" {
		srv, err := startServerUnderTest(ctx, f.exec, f.readyRE, f.timeout)
		if err != nil {
			fmt.Fprintf(stderr, "smtpcheck: -exec: %v\n", err)
			return cli.ExitFailure
		}
		defer srv.stop()
		addr = srv.addr
		defer reportExit(srv, stderr)
	}
	return runChecks(ctx, &f, cases, addr, colored, stdout, stderr)
}

// runChecks runs the cases against addr and reports them.
func runChecks(ctx context.Context, f *smtpcheckFlags, cases []Case, addr string, colored bool, stdout, stderr io.Writer) int {
	text := NewTextReport(stdout, colored)
	var results []Result
	var tally Tally
	err := Run(ctx, cases, Options{Addr: addr, Maildir: f.maildir, Timeout: f.timeout, CaseTimeout: f.caseTimeout()},
		func(res Result) {
			results = append(results, res)
			tally.Add(res)
			if f.json {
				WriteJSON(stdout, res)
			} else {
				text.Add(res)
			}
		})
	if err != nil {
		fmt.Fprintf(stderr, "smtpcheck: %v\n", err)
		return cli.ExitFailure
	}
	if !f.json {
		text.Close()
	}
	if f.junit != "" {
		if err := writeJUnit(f.junit, results); err != nil {
			fmt.Fprintf(stderr, "smtpcheck: -junit: %v\n", err)
			return cli.ExitFailure
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "smtpcheck: interrupted after %d of %d cases\n", len(results), len(cases))
		return cli.ExitFailure
	}
	if tally.Failed > 0 {
		return cli.ExitFailure
	}
	return cli.ExitOK
}

func writeJUnit(name string, results []Result) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := WriteJUnit(f, results); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// reportExit says so when the server under test stopped by itself during
// the run: every case after that failed for it.
func reportExit(srv *serverUnderTest, stderr io.Writer) {
	if exited, err := srv.exitedEarly(); exited {
		status := "exit status 0"
		if err != nil {
			status = err.Error()
		}
		fmt.Fprintf(stderr, "smtpcheck: the server exited during the run (%s); the end of its output:\n%s", status, srv.output.tail())
	}
}
