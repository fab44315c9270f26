// Package smtpdproc runs the smtpd command for tests: as a child process,
// or inside the test process, and in both cases collects what it prints and
// reads the addresses of its "Listening on" lines.
package smtpdproc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StartTimeout bounds the wait for the "Listening on" lines.
const StartTimeout = 10 * time.Second

// Listening holds the addresses smtpd printed at startup, one per
// listener; an address is empty when that listener is off.
type Listening struct {
	TCP  string // "Listening on TCP": the SMTP port
	UDP  string // "Listening on UDP": the management protocol
	TLS  string // "Listening on TLS": implicit TLS (-tls-port)
	HTTP string // "Listening on HTTP": Prometheus metrics (-metrics-http)
}

var (
	listeningTCP  = regexp.MustCompile(`(?m)^Listening on TCP (\S+)$`)
	listeningUDP  = regexp.MustCompile(`(?m)^Listening on UDP (\S+)$`)
	listeningTLS  = regexp.MustCompile(`(?m)^Listening on TLS (\S+)$`)
	listeningHTTP = regexp.MustCompile(`(?m)^Listening on HTTP (\S+)$`)
)

// WaitListening waits until out holds smtpd's "Listening on" lines (it
// prints them all in one write) and returns their addresses.
func WaitListening(out *Output, timeout time.Duration) (Listening, bool) {
	if !out.WaitMatch(listeningTCP, timeout) {
		return Listening{}, false
	}
	text := out.Bytes()
	find := func(re *regexp.Regexp) string {
		if m := re.FindSubmatch(text); m != nil {
			return string(m[1])
		}
		return ""
	}
	return Listening{TCP: find(listeningTCP), UDP: find(listeningUDP), TLS: find(listeningTLS), HTTP: find(listeningHTTP)}, true
}

// Process is the smtpd command running as a child process.
type Process struct {
	Cmd *exec.Cmd
	Listening
	Stdout, Stderr *Output

	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
	// signaled is set once a SIGTERM or SIGINT was sent: a second one
	// would make smtpd stop at once instead of gracefully.
	signaled bool
}

// Start runs the smtpd command found on $PATH (env's, when env is not
// nil) in dir, on 127.0.0.1 and free TCP and UDP ports (args may override
// them), and waits until it listens.
func Start(dir string, env []string, args ...string) (*Process, error) {
	return StartCmd(Command(dir, env, args...))
}

// Command returns the command line Start runs, for a caller to change
// before StartCmd runs it.
func Command(dir string, env []string, args ...string) *exec.Cmd {
	args = append([]string{"-l", "127.0.0.1", "-p", "0", "-M", "0"}, args...)
	cmd := exec.Command("smtpd", args...)
	cmd.Dir = dir
	cmd.Env = env
	return cmd
}

// StartCmd runs cmd, an smtpd command line of the caller's making (another
// binary, another user), and waits until it listens.
func StartCmd(cmd *exec.Cmd) (*Process, error) {
	p := &Process{Cmd: cmd, Stdout: NewOutput(), Stderr: NewOutput(), done: make(chan struct{})}
	p.Cmd.Stdout = p.Stdout
	p.Cmd.Stderr = p.Stderr
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
		p.Stdout.CloseWrites()
	}()
	l, ok := WaitListening(p.Stdout, StartTimeout)
	if !ok {
		p.Kill()
		return nil, fmt.Errorf("smtpd did not start listening; stdout:\n%s\nstderr:\n%s", p.Stdout.Bytes(), p.Stderr.Bytes())
	}
	p.Listening = l
	return p, nil
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns the exit status as an error (nil for status 0) once the
// process has exited.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Stop signals the process and waits at most timeout for it to exit; it
// returns the exit status as an error (nil for status 0). A SIGTERM or
// SIGINT is not sent twice: a second one would stop smtpd at once.
func (p *Process) Stop(sig syscall.Signal, timeout time.Duration) error {
	if sig == syscall.SIGKILL || !p.signaled {
		p.Signal(sig)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("smtpd still running %v after %v; killed", timeout, sig)
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	p.signaled = p.signaled || sig == syscall.SIGTERM || sig == syscall.SIGINT
	return p.Cmd.Process.Signal(sig)
}

// Kill kills the process and waits until it is gone.
func (p *Process) Kill() {
	p.Cmd.Process.Signal(os.Kill)
	<-p.done
}

// Output collects a command's output and lets a test wait for a match.
type Output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed at the next write, then replaced
	closed  bool          // the writer is gone: no more matches will come
}

// NewOutput returns an empty Output.
func NewOutput() *Output { return &Output{changed: make(chan struct{})} }

func (b *Output) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// CloseWrites tells waiters that nothing more will be written.
func (b *Output) CloseWrites() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	close(b.changed)
	b.changed = make(chan struct{})
}

// Bytes returns a copy of what was written so far.
func (b *Output) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// WaitMatch waits until the output matches re, or timeout passes, or
// CloseWrites was called.
func (b *Output) WaitMatch(re *regexp.Regexp, timeout time.Duration) bool {
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

// Runs reports whether the process pid runs, or is a zombie whose parent
// is parent (one that parent failed to wait for; a zombie of another
// parent is an orphan the system reaps). Linux only: elsewhere it reports
// false.
func Runs(pid, parent int) bool {
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
