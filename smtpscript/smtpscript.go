// Package smtpscript gives testscript scripts
// (github.com/rogpeppe/go-internal/testscript) commands to test SMTP: start
// an smtpd inside the test, play scripted dialogues against it or against
// any server, and look at what landed in the Maildirs.
//
// A test hands them to testscript with the Setup hook:
//
//	func TestSMTP(t *testing.T) {
//		testscript.Run(t, testscript.Params{
//			Dir:   "testdata/script",
//			Cmds:  smtpscript.Commands(),
//			Setup: smtpscript.Setup,
//		})
//	}
//
// and a script (testdata/script/hello.txtar) reads:
//
//	start-smtpd -d data -hostname mx.test
//	smtp hello.dialog
//	stdout '^S: 250 2\.0\.0 Ok: queued'
//	mail-count data/Maildir/alice 1
//	stop-smtpd
//
//	-- hello.dialog --
//	S: ^220
//	C: EHLO client.test
//	S: ^250
//	C: MAIL FROM:<bob@example.net>
//	S: ^250
//	C: RCPT TO:<alice@example.org>
//	S: ^250
//	C: DATA
//	S: ^354
//	C: Subject: hello
//	C:
//	C: Hi Alice.
//	C: .
//	S: ^250
//	C: QUIT
//	S: ^221
//
// A dialogue file has one step per line (see client.Dialogue): "C: text"
// sends a line, "R: "raw"" sends Go-quoted bytes, "S: regexp" reads a reply
// and matches it, CLOSED expects the server to hang up, WAIT pauses, TLS
// starts TLS after STARTTLS. Lines to send are held until the next S: step,
// so a run of C: lines is one PIPELINING batch.
//
// The commands (each fails the script when what it checks does not hold;
// with ! before it, when it does):
//
//	start-smtpd [-exec] [flags]
//		Starts smtpd with the flags of the smtpd command, on 127.0.0.1
//		and free ports unless the flags say otherwise, with relative file
//		names taken from the script's directory. It sets SMTP_ADDR and
//		SMTP_PORT; METRICS_ADDR and METRICS_PORT when the management
//		protocol is on; TLS_ADDR and TLS_PORT with -tls-port. The
//		server runs inside the test process; with -exec it is the
//		smtpd program found on $PATH, run as a process of its own (its
//		pid in SMTPD_PID), which a content filter (-filter) needs to
//		run in the script's directory. The script's end stops it.
//	stop-smtpd [-kill]
//		Shuts the server down as SIGTERM does (-kill: at once), waits
//		for it and writes its output to stdout and stderr; it fails
//		unless the exit status is 0.
//	smtpd-wait [-stderr] REGEXP
//		Waits (10 s at most) until the server's output matches REGEXP.
//	smtpd-signal TERM|INT|HUP
//		Sends the server the signal and returns at once.
//	smtp [-addr HOST:PORT] [-tls] [-cafile FILE] [-slow D] [-sessions N | -bg NAME] FILE...
//		Plays the dialogue in the FILEs, one after the other in one
//		session, against $SMTP_ADDR (with -tls: implicit TLS to
//		$TLS_ADDR), and writes its transcript to stdout; with !, the
//		step that failed goes to stderr. TLS checks the server's
//		certificate against -cafile, or not at all without it. -slow
//		sends every octet on its own, D apart. -sessions plays the
//		dialogue in N sessions at once, whose WAIT steps wait until all
//		N are there. -bg plays it in the background.
//	smtp-wait NAME
//		Waits for the background dialogue NAME and writes its transcript.
//	smtp-continue NAME
//		Lets the background dialogue NAME go on past its next WAIT step.
//	need-ext [-addr HOST:PORT] EXT...
//		Says EHLO to the server and skips the rest of the script unless
//		each EXT, a regular expression, matches a whole line of the
//		EHLO reply (after the code), ignoring case. For each, it sets
//		EXT_<KEYWORD> to what follows the keyword (EXT_SIZE=10240000).
//	fill-dialogue [-line PREFIX] FILE OCTETS
//		Writes a dialogue FILE that sends OCTETS octets of message data
//		(80-octet lines of letters), or with -line one command line of
//		OCTETS octets starting with PREFIX: big messages and long lines
//		without big files in the script.
//	mail-count [-wait] DIR N
//		Checks that the Maildir DIR holds N messages in new/ and nothing
//		in tmp/; with -wait, after waiting ($SMTP_TIMEOUT at most) until
//		new/ holds N, for a server that stores mail after its 250.
//	mail-cat [-body] DIR
//		Writes the messages of DIR/new to stdout, oldest first (-body:
//		only each one's body, Go-quoted on one line).
//	mail-landed MAILBOX [FILE]
//		When $SMTP_MAILDIR is set (a Maildir root), checks that a message
//		not there when the script began is in $SMTP_MAILDIR/MAILBOX/new,
//		ending with FILE's text (line endings aside), and that tmp/ is
//		empty; waits 5 s at most for both. Without $SMTP_MAILDIR it
//		checks nothing.
//
// Every network wait is bounded by $SMTP_TIMEOUT (a Go duration; 10s when
// unset); a transcript keeps its first and last 32 KiB.
package smtpscript

import (
	"path/filepath"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"
)

// Commands returns the commands, for testscript.Params.Cmds. Add Setup to
// the Params too: need-ext and mail-landed need it.
func Commands() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"start-smtpd":   cmdStartSmtpd,
		"stop-smtpd":    cmdStopSmtpd,
		"smtpd-wait":    cmdSmtpdWait,
		"smtpd-signal":  cmdSmtpdSignal,
		"smtp":          cmdSMTP,
		"smtp-wait":     cmdSMTPWait,
		"smtp-continue": cmdSMTPContinue,
		"need-ext":      cmdNeedExt,
		"fill-dialogue": cmdFillDialogue,
		"mail-count":    cmdMailCount,
		"mail-cat":      cmdMailCat,
		"mail-landed":   cmdMailLanded,
	}
}

// Setup prepares a script for the commands, for testscript.Params.Setup.
// A Setup of one's own can call it, after setting the environment.
func Setup(e *testscript.Env) error {
	s := &setup{t: e.T()}
	if root := e.Getenv("SMTP_MAILDIR"); root != "" {
		if !filepath.IsAbs(root) {
			root = filepath.Join(e.Cd, root)
		}
		s.before = maildirFiles(root)
	}
	e.Values[setupKey{}] = s
	return nil
}

type setupKey struct{}

// setup is what Setup records for a script.
type setup struct {
	t testscript.T // to skip the script
	// before holds the messages in $SMTP_MAILDIR when the script began
	// ("alice/new/NAME"): mail-landed looks only at the others.
	before map[string]bool
}

func setupOf(ts *testscript.TestScript, command string) *setup {
	s, ok := ts.Value(setupKey{}).(*setup)
	if !ok {
		ts.Fatalf("%s: add smtpscript.Setup to the testscript.Params", command)
	}
	return s
}

// scriptState is what the commands of one script share.
type scriptState struct {
	server  *server
	dialogs map[string]chan played   // smtp -bg NAME
	resumes map[string]chan struct{} // the WAIT steps of smtp -bg NAME
}

var scriptStates sync.Map // *testscript.TestScript → *scriptState

func stateOf(ts *testscript.TestScript) *scriptState {
	v, loaded := scriptStates.LoadOrStore(ts, &scriptState{dialogs: make(map[string]chan played), resumes: make(map[string]chan struct{})})
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
