package smtpscript

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tpe-protos/smtpd/internal/cli"
	"github.com/tpe-protos/smtpd/internal/smtpdproc"
)

// stopTimeout bounds the wait for a stopping server.
const stopTimeout = 20 * time.Second

// server is an smtpd started by start-smtpd: inside the test process, or
// (-exec) as a child process.
type server struct {
	smtpdproc.Listening
	stdout, stderr *smtpdproc.Output

	proc *smtpdproc.Process // with -exec

	// Inside the test process:
	signals  chan os.Signal
	done     chan struct{} // closed when the server has returned
	status   int           // its exit status, once done
	signaled bool          // a SIGTERM or SIGINT was sent
}

// startInProcess runs smtpd inside the test process, in dir.
func startInProcess(dir string, args []string) (*server, error) {
	s := &server{stdout: smtpdproc.NewOutput(), stderr: smtpdproc.NewOutput(),
		signals: make(chan os.Signal, 4), done: make(chan struct{})}
	args = append([]string{"-l", "127.0.0.1", "-p", "0", "-M", "0"}, args...)
	go func() {
		s.status = cli.SmtpdEmbedded(context.Background(), cli.Embedding{Dir: dir, Signals: s.signals}, args, s.stdout, s.stderr)
		close(s.done)
		s.stdout.CloseWrites()
	}()
	l, ok := smtpdproc.WaitListening(s.stdout, smtpdproc.StartTimeout)
	if !ok {
		s.kill()
		return nil, fmt.Errorf("smtpd did not start listening; stdout:\n%s\nstderr:\n%s", s.stdout.Bytes(), s.stderr.Bytes())
	}
	s.Listening = l
	return s, nil
}

// startProcess runs the smtpd program on $PATH in dir, with env.
func startProcess(dir string, env, args []string) (*server, error) {
	p, err := smtpdproc.Start(dir, env, args...)
	if err != nil {
		return nil, err
	}
	return &server{Listening: p.Listening, stdout: p.Stdout, stderr: p.Stderr, proc: p}, nil
}

func (s *server) exited() bool {
	if s.proc != nil {
		return s.proc.Exited()
	}
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *server) signal(sig syscall.Signal) error {
	if s.proc != nil {
		return s.proc.Signal(sig)
	}
	s.signaled = s.signaled || sig == syscall.SIGTERM || sig == syscall.SIGINT
	select {
	case s.signals <- sig:
		return nil
	case <-s.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("smtpd takes no signal")
	}
}

// stop signals the server (a SIGTERM or SIGINT only once: a second one
// stops it at once) and waits for it; it returns its exit status as an
// error, nil for 0.
func (s *server) stop(sig syscall.Signal) error {
	if s.proc != nil {
		return s.proc.Stop(sig, stopTimeout)
	}
	if sig == syscall.SIGKILL || !s.signaled {
		s.signal(sig)
	}
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.kill()
		return fmt.Errorf("smtpd still running %v after %v; killed", stopTimeout, sig)
	}
	if s.status != 0 {
		return fmt.Errorf("smtpd exited with status %d", s.status)
	}
	return nil
}

// kill stops the server at once and waits until it is gone.
func (s *server) kill() {
	if s.proc != nil {
		s.proc.Kill()
		return
	}
	s.signal(syscall.SIGKILL)
	<-s.done
}

// start-smtpd [-exec] [flags]: see the package documentation.
func cmdStartSmtpd(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! start-smtpd")
	}
	st := stateOf(ts)
	if st.server != nil && !st.server.exited() {
		ts.Fatalf("start-smtpd: a server is already running")
	}
	var (
		s   *server
		err error
	)
	if len(args) > 0 && args[0] == "-exec" {
		// The child's environment: the script's, and nothing else.
		env := []string{}
		for _, name := range []string{"PATH", "HOME", "TMPDIR", "NO_COLOR", "TZ", "GORACE"} {
			env = append(env, name+"="+ts.Getenv(name))
		}
		s, err = startProcess(ts.MkAbs("."), env, args[1:])
	} else {
		s, err = startInProcess(ts.MkAbs("."), args)
	}
	ts.Check(err)
	st.server = s
	setAddr(ts, "SMTP", s.TCP)
	setAddr(ts, "METRICS", s.UDP)
	setAddr(ts, "TLS", s.TLS)
	if s.proc != nil {
		ts.Setenv("SMTPD_PID", strconv.Itoa(s.proc.Cmd.Process.Pid))
	}
}

// setAddr sets NAME_ADDR to addr and NAME_PORT to its port.
func setAddr(ts *testscript.TestScript, name, addr string) {
	ts.Setenv(name+"_ADDR", addr)
	_, port, _ := strings.Cut(addr, ":")
	ts.Setenv(name+"_PORT", port)
}

func serverOf(ts *testscript.TestScript, command string) *server {
	st := stateOf(ts)
	if st.server == nil {
		ts.Fatalf("%s: no server started", command)
	}
	return st.server
}

// [!] stop-smtpd [-kill]: see the package documentation.
func cmdStopSmtpd(ts *testscript.TestScript, neg bool, args []string) {
	s := serverOf(ts, "stop-smtpd")
	sig := syscall.SIGTERM
	if slices.Equal(args, []string{"-kill"}) {
		sig = syscall.SIGKILL
	} else if len(args) > 0 {
		ts.Fatalf("usage: stop-smtpd [-kill]")
	}
	err := s.stop(sig)
	ts.Stdout().Write(s.stdout.Bytes())
	ts.Stderr().Write(s.stderr.Bytes())
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

// smtpd-wait [-stderr] REGEXP: see the package documentation.
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
	s := serverOf(ts, "smtpd-wait")
	out := s.stdout
	if useStderr {
		out = s.stderr
	}
	if !out.WaitMatch(re, 10*time.Second) {
		ts.Fatalf("smtpd-wait: no match for %q in the server's output:\n%s", args[0], out.Bytes())
	}
}

// smtpd-signal TERM|INT|HUP: see the package documentation.
func cmdSmtpdSignal(ts *testscript.TestScript, neg bool, args []string) {
	sigs := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP}
	sig, ok := sigs[strings.Join(args, " ")]
	if neg || !ok {
		ts.Fatalf("usage: smtpd-signal TERM|INT|HUP")
	}
	ts.Check(serverOf(ts, "smtpd-signal").signal(sig))
}
