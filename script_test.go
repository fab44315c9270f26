package smtpd_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tpe-protos/smtpd/internal/check"
	"github.com/tpe-protos/smtpd/internal/cli"
	"github.com/tpe-protos/smtpd/internal/smtpdproc"
	"github.com/tpe-protos/smtpd/smtpscript"
)

var update = flag.Bool("update", false, "rewrite the cmp golden sections of testdata/script")

// TestMain makes the test binary double as the commands (smtpd,
// metrics_client, smtpplay, smtpcheck): testscript puts it on $PATH under
// their names, for scripts and for tests that run a command as a separate
// process.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"smtpd":          func() { os.Exit(cli.SmtpdMain()) },
		"metrics_client": func() { os.Exit(cli.MetricsClientMain()) },
		"smtpplay":       func() { os.Exit(cli.SmtpplayMain()) },
		"smtpcheck":      func() { os.Exit(check.Main()) },
	})
}

// TestScripts runs the end-to-end scripts of testdata/script, with the
// commands of package smtpscript and a few of this repository's own.
func TestScripts(t *testing.T) {
	cmds := smtpscript.Commands()
	cmds["exitcode"] = cmdExitcode
	cmds["pids-gone"] = cmdPidsGone
	cmds["trace-normalize"] = cmdTraceNormalize
	cmds["smtpd-children"] = cmdSmtpdChildren
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       *update,
		Setup: func(e *testscript.Env) error {
			e.Setenv("HOME", e.WorkDir)
			e.Setenv("NO_COLOR", "1")
			e.Setenv("TZ", "UTC")
			// Under -race, the smtpd processes would each sleep 1 s at
			// exit (the race runtime's atexit_sleep_ms default); a
			// race they find still makes them exit with status 66.
			e.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			return smtpscript.Setup(e)
		},
		Cmds: cmds,
	})
}

// exitcode N PROG [ARGS...]
//
// Runs PROG and checks that it exits with status N; its output is kept for
// stdout and stderr as after exec.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		got = exitErr.ExitCode()
	case err != nil:
		ts.Fatalf("exitcode: %v", err)
	}
	if got != want {
		ts.Fatalf("exitcode: %s exited with status %d, want %d", args[1], got, want)
	}
}

// pids-gone FILE
//
// Waits (5 s at most) until none of the process ids listed in FILE runs any
// more: each is gone, or a zombie that the server (the process $SMTPD_PID
// of start-smtpd -exec, or else this one) is not the parent of (an orphan
// the system reaps). Linux only.
func cmdPidsGone(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: pids-gone FILE")
	}
	server := os.Getpid()
	if pid := ts.Getenv("SMTPD_PID"); pid != "" {
		server, _ = strconv.Atoi(pid)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, field := range strings.Fields(ts.ReadFile(args[0])) {
		pid, err := strconv.Atoi(field)
		ts.Check(err)
		for smtpdproc.Runs(pid, server) {
			if time.Now().After(deadline) {
				ts.Fatalf("pids-gone: process %d still runs", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// smtpd-children N
//
// Checks that the server process of start-smtpd -exec ($SMTPD_PID) has
// exactly N child processes, zombies included. Linux only.
func cmdSmtpdChildren(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: smtpd-children N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	pid := ts.Getenv("SMTPD_PID")
	if pid == "" {
		ts.Fatalf("smtpd-children: no server process (start-smtpd -exec)")
	}
	var children []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%s/task/*/children", pid))
	for _, task := range tasks {
		data, _ := os.ReadFile(task)
		children = append(children, strings.Fields(string(data))...)
	}
	if len(children) != want {
		ts.Fatalf("smtpd-children: smtpd has %d children %v, want %d", len(children), children, want)
	}
}

// traceVariables are the parts of a trace that change from run to run.
var traceVariables = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3} `), "hh:mm:ss.mmm "},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`queued as [A-Z2-7]{13}`), "queued as QUEUEID"},
	{regexp.MustCompile(`\x1b`), `\e`},
}

// trace-normalize
//
// Rewrites the last command's stdout so that a trace can be compared with
// a golden file: times become hh:mm:ss.mmm, loopback ports PORT, queue ids
// QUEUEID, and the escape character of colors \e.
func cmdTraceNormalize(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: trace-normalize")
	}
	out := ts.ReadFile("stdout")
	for _, v := range traceVariables {
		out = v.re.ReplaceAllString(out, v.with)
	}
	ts.Stdout().Write([]byte(out))
}
