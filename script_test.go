package smtpd_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/internal/cli"
)

var update = flag.Bool("update", false, "rewrite the cmp golden sections of testdata/script")

// TestMain makes the test binary double as the smtpd command: testscript
// puts it on $PATH under that name, for scripts and for tests that run the
// command as a separate process.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"smtpd":          func() { os.Exit(cli.SmtpdMain()) },
		"metrics_client": func() { os.Exit(cli.MetricsClientMain()) },
		"smtpplay":       func() { os.Exit(cli.SmtpplayMain()) },
	})
}

// TestScripts runs the end-to-end scripts of testdata/script.
func TestScripts(t *testing.T) {
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
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"start-smtpd":     cmdStartSmtpd,
			"stop-smtpd":      cmdStopSmtpd,
			"smtpd-wait":      cmdSmtpdWait,
			"smtp":            cmdSMTP,
			"smtp-wait":       cmdSMTPWait,
			"smtp-continue":   cmdSMTPContinue,
			"smtpd-signal":    cmdSmtpdSignal,
			"mail-count":      cmdMailCount,
			"mail-cat":        cmdMailCat,
			"exitcode":        cmdExitcode,
			"pids-gone":       cmdPidsGone,
			"trace-normalize": cmdTraceNormalize,
			"smtpd-children":  cmdSmtpdChildren,
		},
	})
}

// scriptState is what the custom commands of one script share.
type scriptState struct {
	server  *smtpdProcess
	dialogs map[string]chan dialogResult // smtp -bg NAME
	resumes map[string]chan struct{}     // the WAIT steps of smtp -bg NAME
}

type dialogResult struct {
	transcript string
	err        error
}

var scriptStates sync.Map // *testscript.TestScript → *scriptState

func stateOf(ts *testscript.TestScript) *scriptState {
	v, loaded := scriptStates.LoadOrStore(ts, &scriptState{dialogs: make(map[string]chan dialogResult), resumes: make(map[string]chan struct{})})
	st := v.(*scriptState)
	if !loaded {
		ts.Defer(func() {
			if st.server != nil {
				st.server.kill()
			}
			scriptStates.Delete(ts)
		})
	}
	return st
}

// start-smtpd [flags]
//
// Starts the smtpd command in the script's directory, on 127.0.0.1 and free
// ports (TCP and UDP) unless the flags say otherwise, waits for its
// "Listening on" lines and sets SMTP_ADDR and SMTP_PORT, and METRICS_ADDR
// and METRICS_PORT when the management protocol is on, and TLS_ADDR and
// TLS_PORT with -tls-port. Its environment is
// the script's PATH, HOME, TMPDIR, NO_COLOR, TZ and GORACE, nothing else. Its
// output is
// collected for smtpd-wait and stop-smtpd. The script's end kills it if
// stop-smtpd did not.
func cmdStartSmtpd(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! start-smtpd")
	}
	st := stateOf(ts)
	if st.server != nil && !st.server.exited() {
		ts.Fatalf("start-smtpd: a server is already running")
	}
	env := []string{}
	for _, name := range []string{"PATH", "HOME", "TMPDIR", "NO_COLOR", "TZ", "GORACE"} {
		env = append(env, name+"="+ts.Getenv(name))
	}
	p, err := startSmtpd(ts.MkAbs("."), env, args...)
	ts.Check(err)
	st.server = p
	ts.Setenv("SMTP_ADDR", p.addr)
	_, port, _ := strings.Cut(p.addr, ":")
	ts.Setenv("SMTP_PORT", port)
	ts.Setenv("METRICS_ADDR", p.metricsAddr)
	_, port, _ = strings.Cut(p.metricsAddr, ":")
	ts.Setenv("METRICS_PORT", port)
	ts.Setenv("TLS_ADDR", p.tlsAddr)
	_, port, _ = strings.Cut(p.tlsAddr, ":")
	ts.Setenv("TLS_PORT", port)
}

// [!] stop-smtpd [-kill]
//
// Sends SIGTERM (SIGKILL with -kill) to the server, unless smtpd-signal sent
// one already (a second would stop it at once), waits for it to exit and
// copies its output to the script's stdout and stderr. It fails unless the
// exit status is 0 (with !, unless it is not).
func cmdStopSmtpd(ts *testscript.TestScript, neg bool, args []string) {
	st := stateOf(ts)
	if st.server == nil {
		ts.Fatalf("stop-smtpd: no server started")
	}
	sig := syscall.SIGTERM
	if slices.Equal(args, []string{"-kill"}) {
		sig = syscall.SIGKILL
	} else if len(args) > 0 {
		ts.Fatalf("usage: stop-smtpd [-kill]")
	}
	err := st.server.stop(sig, 20*time.Second)
	ts.Stdout().Write(st.server.stdout.bytes())
	ts.Stderr().Write(st.server.stderr.bytes())
	if sig == syscall.SIGKILL {
		return
	}
	switch {
	case err != nil && !neg:
		ts.Fatalf("stop-smtpd: %v", err)
	case err == nil && neg:
		ts.Fatalf("stop-smtpd: server exited with status 0")
	}
}

// smtpd-wait [-stderr] REGEXP
//
// Waits (10 s at most) until the server's standard output (or error) so far
// matches REGEXP.
func cmdSmtpdWait(ts *testscript.TestScript, neg bool, args []string) {
	useStderr := len(args) == 2 && args[0] == "-stderr"
	if useStderr {
		args = args[1:]
	}
	if neg || len(args) != 1 {
		ts.Fatalf("usage: smtpd-wait [-stderr] REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[0])
	ts.Check(err)
	st := stateOf(ts)
	if st.server == nil {
		ts.Fatalf("smtpd-wait: no server started")
	}
	out := st.server.stdout
	if useStderr {
		out = st.server.stderr
	}
	if !out.waitMatch(re, 10*time.Second) {
		ts.Fatalf("smtpd-wait: no match for %q in the server's output:\n%s", args[0], out.bytes())
	}
}

// [!] smtp [-addr HOST:PORT] [-tls] [-cafile FILE] [-bg NAME] FILE
//
// Plays the dialogue FILE (see client.Dialogue) against $SMTP_ADDR and
// writes its transcript to stdout. With -tls it connects with implicit TLS
// to $TLS_ADDR instead. TLS (-tls, or a TLS step after STARTTLS) checks the
// server's certificate against the CA certificates in -cafile (the
// certificate of "smtpd -tls auto" is its own CA), or not at all without
// it. With -bg it plays in the background; smtp-wait NAME collects it.
func cmdSMTP(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("smtp", flag.ContinueOnError)
	addr := fs.String("addr", "", "")
	implicit := fs.Bool("tls", false, "")
	cafile := fs.String("cafile", "", "")
	bg := fs.String("bg", "", "")
	if fs.Parse(args) != nil || fs.NArg() != 1 {
		ts.Fatalf("usage: smtp [-addr HOST:PORT] [-tls] [-cafile FILE] [-bg NAME] FILE")
	}
	if *addr == "" {
		*addr = ts.Getenv("SMTP_ADDR")
		if *implicit {
			*addr = ts.Getenv("TLS_ADDR")
		}
	}
	tlsConfig := &tls.Config{InsecureSkipVerify: true}
	if *cafile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(ts.ReadFile(*cafile))) {
			ts.Fatalf("smtp: no certificate in %s", *cafile)
		}
		host, _, _ := net.SplitHostPort(*addr)
		tlsConfig = &tls.Config{RootCAs: pool, ServerName: host}
	}
	d, err := client.ParseDialogue(strings.NewReader(ts.ReadFile(fs.Arg(0))))
	ts.Check(err)
	if *bg != "" {
		if neg {
			ts.Fatalf("unsupported: ! smtp -bg (use ! smtp-wait)")
		}
		done := make(chan dialogResult, 1)
		resume := make(chan struct{})
		stateOf(ts).dialogs[*bg] = done
		stateOf(ts).resumes[*bg] = resume
		d.Resume = resume
		go func() { done <- playDialogue(*addr, *implicit, tlsConfig, d) }()
		return
	}
	checkDialogue(ts, neg, playDialogue(*addr, *implicit, tlsConfig, d))
}

// [!] smtp-wait NAME
//
// Waits for the background dialogue NAME and writes its transcript to
// stdout.
func cmdSMTPWait(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: smtp-wait NAME")
	}
	done, ok := stateOf(ts).dialogs[args[0]]
	if !ok {
		ts.Fatalf("smtp-wait: no dialogue %q", args[0])
	}
	select {
	case res := <-done:
		checkDialogue(ts, neg, res)
	case <-time.After(30 * time.Second):
		ts.Fatalf("smtp-wait: dialogue %q still running after 30s", args[0])
	}
}

// smtp-continue NAME
//
// Lets the background dialogue NAME go on past its next WAIT step.
func cmdSMTPContinue(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: smtp-continue NAME")
	}
	resume, ok := stateOf(ts).resumes[args[0]]
	if !ok {
		ts.Fatalf("smtp-continue: no dialogue %q", args[0])
	}
	select {
	case resume <- struct{}{}:
	case <-time.After(10 * time.Second):
		ts.Fatalf("smtp-continue: dialogue %q is not at a WAIT step", args[0])
	}
}

// smtpd-signal TERM|INT|HUP
//
// Sends the signal to the server and returns at once; stop-smtpd waits for
// the exit.
func cmdSmtpdSignal(ts *testscript.TestScript, neg bool, args []string) {
	sigs := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP}
	sig, ok := sigs[strings.Join(args, " ")]
	if neg || !ok {
		ts.Fatalf("usage: smtpd-signal TERM|INT|HUP")
	}
	st := stateOf(ts)
	if st.server == nil {
		ts.Fatalf("smtpd-signal: no server started")
	}
	ts.Check(st.server.signal(sig))
}

func playDialogue(addr string, implicitTLS bool, tlsConfig *tls.Config, d *client.Dialogue) dialogResult {
	var transcript bytes.Buffer
	var (
		c   *client.Client
		err error
	)
	if implicitTLS {
		c, err = client.DialTLS(addr, tlsConfig)
	} else {
		c, err = client.Dial(addr)
	}
	if err != nil {
		return dialogResult{err: err}
	}
	defer c.Close()
	c.TLSConfig = tlsConfig
	c.Transcript = &transcript
	c.Timeout = 10 * time.Second
	err = d.Play(c)
	return dialogResult{transcript: transcript.String(), err: err}
}

func checkDialogue(ts *testscript.TestScript, neg bool, res dialogResult) {
	ts.Stdout().Write([]byte(res.transcript))
	switch {
	case res.err != nil && !neg:
		ts.Fatalf("smtp: %v", res.err)
	case res.err == nil && neg:
		ts.Fatalf("smtp: dialogue succeeded unexpectedly")
	}
}

// mail-count DIR N
//
// Checks that the Maildir DIR holds exactly N messages in new/ and nothing
// in tmp/.
func cmdMailCount(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mail-count DIR N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	dir := ts.MkAbs(args[0])
	if got := len(readDirNames(ts, filepath.Join(dir, "new"))); got != want {
		ts.Fatalf("mail-count: %s/new holds %d messages, want %d", args[0], got, want)
	}
	if tmp := readDirNames(ts, filepath.Join(dir, "tmp")); len(tmp) != 0 {
		ts.Fatalf("mail-count: %s/tmp is not empty: %q", args[0], tmp)
	}
}

// mail-cat [-body] DIR
//
// Writes the messages in the Maildir DIR's new/ to stdout, oldest first,
// each after a line "== FILE".
//
// With -body it writes instead, for each message, only its body (what
// follows the first empty line; "" when there is none) as one Go-quoted
// line, and no "== FILE" lines: cmp can then check a body byte for byte,
// bare CRs and 8-bit bytes included, against a plain-text file.
func cmdMailCat(ts *testscript.TestScript, neg bool, args []string) {
	body := len(args) > 0 && args[0] == "-body"
	if body {
		args = args[1:]
	}
	if neg || len(args) != 1 {
		ts.Fatalf("usage: mail-cat [-body] DIR")
	}
	dir := filepath.Join(ts.MkAbs(args[0]), "new")
	for _, name := range readDirNames(ts, dir) {
		msg := ts.ReadFile(filepath.Join(dir, name))
		if body {
			_, b, _ := strings.Cut(msg, "\n\n")
			fmt.Fprintf(ts.Stdout(), "%s\n", strconv.Quote(b))
			continue
		}
		fmt.Fprintf(ts.Stdout(), "== %s\n", name)
		ts.Stdout().Write([]byte(msg))
	}
}

// readDirNames lists a Maildir subdirectory in delivery order: the unique
// names begin with seconds and microseconds.
func readDirNames(ts *testscript.TestScript, dir string) []string {
	entries, err := os.ReadDir(dir)
	ts.Check(err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.SortFunc(names, func(a, b string) int { return compareMaildirNames(a, b) })
	return names
}

// compareMaildirNames orders "<sec>.M<usec>P…" names by time.
func compareMaildirNames(a, b string) int {
	key := func(s string) (int64, int64) {
		sec, rest, _ := strings.Cut(s, ".M")
		usec, _, _ := strings.Cut(rest, "P")
		x, _ := strconv.ParseInt(sec, 10, 64)
		y, _ := strconv.ParseInt(usec, 10, 64)
		return x, y
	}
	as, au := key(a)
	bs, bu := key(b)
	if as != bs {
		return int(as - bs)
	}
	if au != bu {
		return int(au - bu)
	}
	return strings.Compare(a, b)
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
// more: each is gone, or a zombie that smtpd is not the parent of (an
// orphan the system reaps). Linux only.
func cmdPidsGone(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: pids-gone FILE")
	}
	server := 0
	if st := stateOf(ts); st.server != nil {
		server = st.server.cmd.Process.Pid
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, field := range strings.Fields(ts.ReadFile(args[0])) {
		pid, err := strconv.Atoi(field)
		ts.Check(err)
		for processRuns(pid, server) {
			if time.Now().After(deadline) {
				ts.Fatalf("pids-gone: process %d still runs", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// processRuns reports whether pid runs, or is a zombie child of parent.
func processRuns(pid, parent int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The fields after the command name, which is in parentheses.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 2 {
		return false
	}
	ppid, _ := strconv.Atoi(fields[1])
	return fields[0] != "Z" || ppid == parent
}

// smtpd-children N
//
// Checks that the server process has exactly N child processes, zombies
// included. Linux only.
func cmdSmtpdChildren(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: smtpd-children N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	st := stateOf(ts)
	if st.server == nil {
		ts.Fatalf("smtpd-children: no server started")
	}
	pid := st.server.cmd.Process.Pid
	var children []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
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
