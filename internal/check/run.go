package check

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/internal/scripthook"
	"github.com/tpe-protos/smtpd/smtpscript"
)

// Outcomes of a case.
const (
	Pass = "pass"
	Fail = "fail"
	Skip = "skip"
)

// Options say where and how to run the suite.
type Options struct {
	Addr    string // the server, HOST:PORT; cases connect nowhere else
	Maildir string // the server's Maildir root, or "": deliveries are not looked at
	// Timeout bounds each network wait of a case (a connection, a
	// reply); a case that waits longer fails.
	Timeout time.Duration
	// CaseTimeout bounds a whole case, whatever it does.
	CaseTimeout time.Duration
}

// Result is how a case went.
type Result struct {
	Case
	Outcome string // Pass, Fail or Skip
	// Reason says why the case failed or was skipped.
	Reason string
	// Step is set when a dialogue step failed: what was sent, what was
	// expected and what came, and why it was expected.
	Step *Step
	// Transcript holds the dialogues of the case, each after a line
	// "== FILE…"; each keeps its first and last 32 KiB.
	Transcript string
	Duration   time.Duration
}

// Step is the exchange of a case that did not go as written.
type Step struct {
	Command  string `json:"command"`  // the command line the reply answers ("" for the greeting, "." for the end of data)
	Expected string `json:"expected"` // the dialogue step, such as "S: ^503"
	Got      string `json:"got"`      // the reply that came, or "" when none did
	Why      string `json:"why"`      // the rule and where it is written, or ""
}

// Run runs the cases one after the other (a server written as an exercise
// may serve one client at a time) and calls each with every result as it
// comes. When ctx ends, the case under way is abandoned and the others are
// not run.
func Run(ctx context.Context, cases []Case, opts Options, each func(Result)) error {
	dir, err := os.MkdirTemp("", "smtpcheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var files []string
	byName := make(map[string]Case)
	for _, c := range cases {
		name := filepath.Join(dir, c.Name+".txtar")
		if err := os.WriteFile(name, c.Data, 0o600); err != nil {
			return err
		}
		files = append(files, name)
		byName[c.Name] = c
	}
	if opts.Maildir != "" {
		if opts.Maildir, err = filepath.Abs(opts.Maildir); err != nil {
			return err
		}
	}
	top := &suiteT{ctx: ctx, opts: opts, cases: byName, each: each}
	testscript.RunT(top, testscript.Params{
		Files:              files,
		WorkdirRoot:        dir,
		RequireUniqueNames: true,
		Cmds:               smtpscript.Commands(),
		Setup:              top.setup,
	})
	return top.err
}

// suiteT is the testscript.T of the whole run: it runs each script as a
// subtest and turns it into a Result.
type suiteT struct {
	ctx   context.Context
	opts  Options
	cases map[string]Case
	each  func(Result)
	err   error // from testscript itself (no scripts, say)
}

func (t *suiteT) Skip(args ...any)  { t.Fatal(args...) }
func (t *suiteT) Fatal(args ...any) { t.err = errors.New(fmt.Sprint(args...)); runtime.Goexit() }
func (t *suiteT) FailNow()          { t.Fatal("testscript failed") }
func (t *suiteT) Parallel()         {}
func (t *suiteT) Log(args ...any)   {}
func (t *suiteT) Verbose() bool     { return false }

// Run runs one script, at most CaseTimeout long, and reports its result.
func (t *suiteT) Run(name string, f func(testscript.T)) {
	c := t.cases[name]
	if t.ctx.Err() != nil {
		return
	}
	ct := &caseT{result: Result{Case: c, Outcome: Pass}}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ct)
	}()
	var res Result
	select {
	case <-done:
		res = ct.finish()
	case <-time.After(t.opts.CaseTimeout):
		res = ct.abandon(fmt.Sprintf("the case was still running after %v", t.opts.CaseTimeout))
	case <-t.ctx.Done():
		res = ct.abandon("interrupted")
	}
	res.Duration = time.Since(start)
	if t.ctx.Err() == nil {
		t.each(res)
	}
}

// setup prepares each script: the server's address, the bounds, the
// Maildir, and an observer for the dialogues it plays.
func (t *suiteT) setup(e *testscript.Env) error {
	e.Setenv("SMTP_ADDR", t.opts.Addr)
	e.Setenv("SMTP_TIMEOUT", t.opts.Timeout.String())
	e.Setenv("SMTP_MAILDIR", t.opts.Maildir)
	if ct, ok := e.T().(*caseT); ok {
		e.Values[scripthook.Key{}] = scripthook.Observer(ct.observe)
	}
	return smtpscript.Setup(e)
}

// caseT is the testscript.T of one script.
type caseT struct {
	mu       sync.Mutex
	result   Result
	log      strings.Builder
	lastFail *client.StepError // of the last dialogue, if it failed
	over     bool              // finished or abandoned: ignore the rest
}

func (t *caseT) Skip(args ...any) {
	t.mu.Lock()
	t.result.Outcome, t.result.Reason = Skip, fmt.Sprint(args...)
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *caseT) Fatal(args ...any) {
	t.Log(args...)
	t.FailNow()
}

func (t *caseT) FailNow() {
	t.mu.Lock()
	t.result.Outcome = Fail
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *caseT) Log(args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintln(&t.log, args...)
}

func (t *caseT) Parallel()                      {}
func (t *caseT) Verbose() bool                  { return false }
func (t *caseT) Run(string, func(testscript.T)) { panic("check: a script runs no subtests") }

// observe records a dialogue the script played.
func (t *caseT) observe(d scripthook.Dialogue) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.over {
		return
	}
	t.result.Transcript += fmt.Sprintf("== %s\n%s", strings.Join(d.Files, " "), d.Transcript)
	t.lastFail = nil
	errors.As(d.Err, &t.lastFail)
}

// scriptFailure finds testscript's "FAIL: file:line: reason" line in a
// script's log.
var scriptFailure = regexp.MustCompile(`(?m)^FAIL: [^\n]*?\.txtar:\d+: (.*)$`)

// finish returns the result of a script that ran to its end.
func (t *caseT) finish() Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.over = true
	res := t.result
	if res.Outcome != Fail {
		return res
	}
	if m := scriptFailure.FindAllStringSubmatch(t.log.String(), -1); m != nil {
		res.Reason = m[len(m)-1][1]
	}
	if t.lastFail != nil && strings.HasPrefix(res.Reason, "smtp: ") {
		res.Step = t.step(t.lastFail)
	}
	return res
}

// abandon returns the result of a script left running.
func (t *caseT) abandon(reason string) Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.over = true
	res := t.result
	res.Outcome, res.Reason = Fail, reason
	return res
}

// step describes a failed dialogue step.
func (t *caseT) step(se *client.StepError) *Step {
	s := &Step{Command: se.Command, Expected: se.Step, Got: se.Reply, Why: t.result.Why}
	if s.Why == "" {
		if code, ok := expectedCode(se.Step); ok {
			s.Why = smtpd.ExplainReply(se.Command, code)
		}
	}
	return s
}

// leadingCode finds the reply code an S: step asks for first: "S: ^503",
// "S: ^(503|554)".
var leadingCode = regexp.MustCompile(`^S: \^\(?([2-5][0-9][0-9])`)

func expectedCode(step string) (int, bool) {
	m := leadingCode.FindStringSubmatch(step)
	if m == nil {
		return 0, false
	}
	code, _ := strconv.Atoi(m[1])
	return code, true
}
