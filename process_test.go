package smtpd_test

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd/internal/smtpdproc"
)

// smtpdProcess is the smtpd command running as a child process: the test
// binary itself, which TestMain put on $PATH under that name.
type smtpdProcess struct {
	*smtpdproc.Process
	addr        string // from its "Listening on TCP" line
	metricsAddr string // "Listening on UDP"; empty with -M -1
	tlsAddr     string // "Listening on TLS"; empty without -tls-port
	httpAddr    string // "Listening on HTTP" (-metrics-http)
	stdout      *syncBuffer
	stderr      *syncBuffer
}

// startSmtpd starts smtpd in dir on 127.0.0.1 and free TCP and UDP ports
// (args may override them) and waits until it listens.
func startSmtpd(dir string, env []string, args ...string) (*smtpdProcess, error) {
	return startSmtpdCmd(smtpdproc.Command(dir, env, args...))
}

// startSmtpdCmd starts cmd, an smtpd command line of the caller's making,
// and waits until it listens.
func startSmtpdCmd(cmd *exec.Cmd) (*smtpdProcess, error) {
	p, err := smtpdproc.StartCmd(cmd)
	if err != nil {
		return nil, err
	}
	return &smtpdProcess{Process: p, addr: p.TCP, metricsAddr: p.UDP, tlsAddr: p.TLS, httpAddr: p.HTTP,
		stdout: &syncBuffer{p.Stdout}, stderr: &syncBuffer{p.Stderr}}, nil
}

// startSmtpdForTest is startSmtpd for a test: it fails the test if the
// server does not start, and kills the server at the test's end if it is
// still running then.
func startSmtpdForTest(t *testing.T, dir string, env []string, args ...string) *smtpdProcess {
	t.Helper()
	p, err := startSmtpd(dir, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.exited() {
			p.kill()
		}
	})
	return p
}

func (p *smtpdProcess) exited() bool { return p.Exited() }

// stop signals the process and waits at most timeout for it to exit; it
// returns the exit status as an error (nil for status 0).
func (p *smtpdProcess) stop(sig syscall.Signal, timeout time.Duration) error {
	return p.Stop(sig, timeout)
}

func (p *smtpdProcess) kill() { p.Kill() }

// syncBuffer collects output (a process's, a trace) and lets a test wait
// for a match.
type syncBuffer struct{ *smtpdproc.Output }

func newSyncBuffer() *syncBuffer { return &syncBuffer{smtpdproc.NewOutput()} }

func (b *syncBuffer) bytes() []byte { return b.Bytes() }
