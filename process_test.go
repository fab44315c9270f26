package smtpd_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// smtpdProcess is the smtpd command running as a child process: the test
// binary itself, which TestMain put on $PATH under that name.
type smtpdProcess struct {
	cmd  *exec.Cmd
	addr string // from its "Listening on TCP" line
	// metricsAddr is from its "Listening on UDP" line; empty with -M -1.
	metricsAddr string
	// tlsAddr is from its "Listening on TLS" line; empty without
	// -tls-port.
	tlsAddr string
	// httpAddr is from its "Listening on HTTP" line (-metrics-http).
	httpAddr string
	stdout   *syncBuffer
	stderr   *syncBuffer
	done     chan struct{} // closed when the process has exited
	err      error         // its exit status, once done
	// signaled is set once a SIGTERM or SIGINT was sent: a second one
	// would make smtpd stop at once instead of gracefully.
	signaled bool
}

var (
	listeningTCP  = regexp.MustCompile(`(?m)^Listening on TCP (\S+)$`)
	listeningUDP  = regexp.MustCompile(`(?m)^Listening on UDP (\S+)$`)
	listeningTLS  = regexp.MustCompile(`(?m)^Listening on TLS (\S+)$`)
	listeningHTTP = regexp.MustCompile(`(?m)^Listening on HTTP (\S+)$`)
)

// startSmtpd starts smtpd in dir on 127.0.0.1 and free TCP and UDP ports
// (args may override them) and waits until it listens.
func startSmtpd(dir string, env []string, args ...string) (*smtpdProcess, error) {
	args = append([]string{"-l", "127.0.0.1", "-p", "0", "-M", "0"}, args...)
	cmd := exec.Command("smtpd", args...)
	cmd.Dir = dir
	cmd.Env = env
	return startSmtpdCmd(cmd)
}

// startSmtpdCmd starts cmd, an smtpd command line, and waits until it
// listens.
func startSmtpdCmd(cmd *exec.Cmd) (*smtpdProcess, error) {
	p := &smtpdProcess{cmd: cmd, stdout: newSyncBuffer(), stderr: newSyncBuffer(), done: make(chan struct{})}
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
		p.stdout.closeWrites()
	}()
	// smtpd prints all its "Listening on" lines in one write.
	ready := listeningTCP
	if !p.stdout.waitMatch(ready, 10*time.Second) {
		p.kill()
		return nil, fmt.Errorf("smtpd did not start listening; stdout:\n%s\nstderr:\n%s", p.stdout.bytes(), p.stderr.bytes())
	}
	out := p.stdout.bytes()
	p.addr = string(listeningTCP.FindSubmatch(out)[1])
	if m := listeningUDP.FindSubmatch(out); m != nil {
		p.metricsAddr = string(m[1])
	}
	if m := listeningTLS.FindSubmatch(out); m != nil {
		p.tlsAddr = string(m[1])
	}
	if m := listeningHTTP.FindSubmatch(out); m != nil {
		p.httpAddr = string(m[1])
	}
	return p, nil
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

func (p *smtpdProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop signals the process and waits at most timeout for it to exit; it
// returns the exit status as an error (nil for status 0).
func (p *smtpdProcess) stop(sig syscall.Signal, timeout time.Duration) error {
	if sig == syscall.SIGKILL || !p.signaled {
		p.signal(sig)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("smtpd still running %v after %v; killed", timeout, sig)
	}
}

// signal sends sig to the process.
func (p *smtpdProcess) signal(sig syscall.Signal) error {
	p.signaled = p.signaled || sig == syscall.SIGTERM || sig == syscall.SIGINT
	return p.cmd.Process.Signal(sig)
}

func (p *smtpdProcess) kill() {
	p.cmd.Process.Signal(os.Kill)
	<-p.done
}

// syncBuffer collects a process's output and lets a test wait for a match.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed at the next write, then replaced
	closed  bool          // the writer is gone: no more matches will come
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// closeWrites tells waiters that nothing more will be written.
func (b *syncBuffer) closeWrites() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *syncBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// waitMatch waits until the output matches re, or timeout passes.
func (b *syncBuffer) waitMatch(re *regexp.Regexp, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		ok := re.Match(b.buf.Bytes())
		changed, closed := b.changed, b.closed
		b.mu.Unlock()
		if ok || closed {
			return ok
		}
		select {
		case <-changed:
		case <-deadline:
			return false
		}
	}
}
