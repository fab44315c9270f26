package smtpscript_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// consumerTest is the test of the consumer module: the usage the package
// documentation shows.
const consumerTest = `package consumer

import (
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/tpe-protos/smtpd/smtpscript"
)

func TestSMTP(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:   "testdata/script",
		Cmds:  smtpscript.Commands(),
		Setup: smtpscript.Setup,
	})
}
`

const consumerScript = `start-smtpd -d data -hostname mx.test
smtp hello.dialog
stdout '^S: 250 2\.0\.0 Ok: queued'
mail-count data/Maildir/alice 1
stop-smtpd

-- hello.dialog --
S: ^220
C: EHLO client.test
S: ^250
C: MAIL FROM:<bob@example.net>
S: ^250
C: RCPT TO:<alice@example.org>
S: ^250
C: DATA
S: ^354
C: Subject: from another module
C:
C: .
S: ^250
C: QUIT
S: ^221
`

// TestConsumerModule makes a module of its own that requires this one (a
// replace directive points at this checkout), with a test that runs a
// script with smtpscript.Commands(), and runs "go test" in it: what a
// project using the package does. It needs the Go command, and the
// module proxy for anything the module cache lacks.
func TestConsumerModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests another module")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on $PATH")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/consumer\n\ngo 1.26.0\n\n" +
			"require (\n\tgithub.com/rogpeppe/go-internal v1.16.0\n\tgithub.com/tpe-protos/smtpd v0.0.0\n)\n\n" +
			"replace github.com/tpe-protos/smtpd => " + repo + "\n",
		"go.sum":                      string(sum),
		"smtp_test.go":                consumerTest,
		"testdata/script/hello.txtar": consumerScript,
	}
	for name, text := range files {
		name = filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(name), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(text), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "test", "-count=1", "-v", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in the consumer module: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestSMTP/hello") {
		t.Errorf("the consumer's script did not run:\n%s", out)
	}
}
