package check

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tpe-protos/smtpd/internal/cli"
)

// serverUnderTest is the server smtpcheck -exec started, in a process
// group of its own so that stopping it stops whatever it started.
type serverUnderTest struct {
	cmd    *exec.Cmd
	addr   string
	output *tailWriter // its standard output and error, the end of them

	done    chan struct{} // closed when the process has exited
	err     error         // its exit status, once done
	mu      sync.Mutex
	stopped bool // stop was called: an exit from now on is ours
}

// stopGrace is how long the server under test has to exit after SIGTERM
// before its process group is killed.
const stopGrace = 5 * time.Second

// startServerUnderTest starts command and waits until it accepts
// connections. Its port is {port} in command, replaced by a free one, or
// the first group of ready matched against its output.
func startServerUnderTest(ctx context.Context, command string, ready *regexp.Regexp, timeout time.Duration) (*serverUnderTest, error) {
	args, err := cli.SplitWords(command)
	if err != nil || len(args) == 0 {
		return nil, fmt.Errorf("%q is not a command line", command)
	}
	s := &serverUnderTest{output: newTailWriter(64*1024, ready), done: make(chan struct{})}
	if strings.Contains(command, "{port}") {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "{port}", strconv.Itoa(port))
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Stdout = s.output
	s.cmd.Stderr = s.output
	inOwnProcessGroup(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx, timeout); err != nil {
		s.stop()
		return nil, fmt.Errorf("%v; the end of its output:\n%s", err, s.output.tail())
	}
	return s, nil
}

// freePort returns a TCP port nothing listens on now, on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady waits until the server printed its address (with -ready) and
// accepts a connection there.
func (s *serverUnderTest) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.After(timeout)
	if s.addr == "" {
		select {
		case found := <-s.output.found:
			s.addr = loopbackAddr(found)
		case <-s.done:
			return fmt.Errorf("the server exited (%v) before printing its address", s.err)
		case <-deadline:
			return fmt.Errorf("no output matched -ready within %v", timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		conn, err := net.DialTimeout("tcp", s.addr, timeout)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("the server exited (%v) before accepting connections", s.err)
		case <-deadline:
			return fmt.Errorf("nothing accepts connections at %s within %v: %v", s.addr, timeout, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// loopbackAddr turns what -ready found, a port or a host:port, into the
// address to connect to: a host that means "every interface" becomes
// 127.0.0.1.
func loopbackAddr(found string) string {
	host, port, err := net.SplitHostPort(found)
	if err != nil {
		return net.JoinHostPort("127.0.0.1", found)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// stop ends the server: SIGTERM to its process group, and SIGKILL to the
// group after stopGrace or once the server itself has exited, so that
// nothing it started survives.
func (s *serverUnderTest) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	signalProcessGroup(s.cmd, false)
	select {
	case <-s.done:
	case <-time.After(stopGrace):
	}
	signalProcessGroup(s.cmd, true)
	<-s.done
}

// exitedEarly reports whether the server exited before stop was called,
// and how.
func (s *serverUnderTest) exitedEarly() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return !s.stopped, s.err
	default:
		return false, nil
	}
}

// tailWriter keeps the last bytes written to it, and looks for a regexp in
// each line: the first group of the first match is sent on found.
type tailWriter struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	ready   *regexp.Regexp
	partial []byte // a line not yet ended, while ready is looked for
	found   chan string
}

func newTailWriter(max int, ready *regexp.Regexp) *tailWriter {
	return &tailWriter{max: max, ready: ready, found: make(chan string, 1)}
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > w.max {
		w.buf = w.buf[len(w.buf)-w.max:]
	}
	if w.ready == nil {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		line, rest, ok := strings.Cut(string(w.partial), "\n")
		if !ok {
			break
		}
		w.partial = []byte(rest)
		if m := w.ready.FindStringSubmatch(line); m != nil {
			w.found <- m[1]
			w.ready = nil // one address is enough
			w.partial = nil
			break
		}
	}
	if len(w.partial) > w.max {
		w.partial = w.partial[len(w.partial)-w.max:]
	}
	return len(p), nil
}

func (w *tailWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
