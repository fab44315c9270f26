package smtpscript_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tpe-protos/smtpd/smtpscript"
)

// A script that starts a server, sends it a message and looks at the
// Maildir.
const helloScript = `start-smtpd -d data -hostname mx.test
smtp hello.dialog
stdout '^S: 250 2\.0\.0 Ok: queued'
mail-count data/Maildir/alice 1
stop-smtpd

-- hello.dialog --
S: ^220 mx\.test
C: EHLO client.test
S: ^250-PIPELINING$
C: MAIL FROM:<bob@example.net>
C: RCPT TO:<alice@example.org>
C: DATA
S: ^250
S: ^250
S: ^354
C: Subject: hello
C:
C: Hi Alice.
C: .
S: ^250
C: QUIT
S: ^221
`

// In a test, testscript.Run runs the scripts (see the package
// documentation). A program can run them too, with testscript.RunT and a
// T of its own, as smtpcheck does: here the T prints each script's
// outcome.
func Example() {
	dir, err := os.MkdirTemp("", "smtpscript-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "hello.txtar"), []byte(helloScript), 0o666); err != nil {
		panic(err)
	}
	testscript.RunT(printT{}, testscript.Params{
		Dir:   dir,
		Cmds:  smtpscript.Commands(),
		Setup: smtpscript.Setup,
	})
	// Output:
	// PASS hello
}

// ExampleCommands lists the commands.
func ExampleCommands() {
	var names []string
	for name := range smtpscript.Commands() {
		names = append(names, name)
	}
	slices.Sort(names)
	fmt.Println(strings.Join(names, "\n"))
	// Output:
	// fill-dialogue
	// mail-cat
	// mail-count
	// mail-landed
	// need-ext
	// smtp
	// smtp-continue
	// smtp-wait
	// smtpd-signal
	// smtpd-wait
	// start-smtpd
	// stop-smtpd
}

// printT is a testscript.T that runs each script and prints how it went.
type printT struct{ failed *bool }

func (t printT) Run(name string, f func(testscript.T)) {
	failed := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(printT{&failed})
	}()
	<-done
	if failed {
		fmt.Println("FAIL", name)
	} else {
		fmt.Println("PASS", name)
	}
}

func (t printT) FailNow() {
	if t.failed != nil {
		*t.failed = true
	}
	runtime.Goexit()
}
func (t printT) Fatal(args ...any) { fmt.Println(args...); t.FailNow() }
func (t printT) Skip(args ...any)  { runtime.Goexit() }
func (t printT) Log(args ...any)   {}
func (t printT) Parallel()         {}
func (t printT) Verbose() bool     { return false }
