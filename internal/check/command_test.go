package check

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tpe-protos/smtpd/internal/cli"
	"github.com/tpe-protos/smtpd/internal/smtpdproc"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/peers")

// TestMain makes the test binary double as the smtpd and smtpcheck
// commands, on $PATH, for -exec and for the tests that run smtpcheck as a
// process.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"smtpd":     func() { os.Exit(cli.SmtpdMain()) },
		"smtpcheck": func() { os.Exit(Main()) },
	})
}

// command runs smtpcheck with args and returns its exit status and output.
func command(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Command(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// jsonResults parses the output of -json.
func jsonResults(t *testing.T, out string) []jsonResult {
	t.Helper()
	var results []jsonResult
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r jsonResult
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("-json output: %v\n%s", err, out)
		}
		results = append(results, r)
	}
	return results
}

// peersEnv, when set to 1, turns a missing peer server into a failure
// instead of a skip; CI sets it after installing the Debian packages.
const peersEnv = "SMTPD_REQUIRE_PEERS"

// requirePeer skips the test (fails it when SMTPD_REQUIRE_PEERS=1) unless
// ok, saying which Debian package holds what is missing.
func requirePeer(t *testing.T, ok bool, what, pkg string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv(peersEnv) == "1" {
		t.Fatalf("%s not found and %s=1: install the Debian package %q", what, peersEnv, pkg)
	}
	t.Skipf("%s not installed (Debian package %q; set %s=1 to make this a failure)", what, pkg, peersEnv)
}

// aiosmtpdPython returns a Python that has aiosmtpd, or "". Debian's
// python3-aiosmtpd is for /usr/bin/python3, which a python3 earlier on
// $PATH may not be.
func aiosmtpdPython() string {
	for _, python := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(python, "-c", "import aiosmtpd").Run() == nil {
			return python
		}
	}
	return ""
}

// TestPeers runs the suite against two servers nobody here wrote, Python's
// aiosmtpd and Postfix's smtp-sink, and compares what they fail (and why)
// and skip with a golden file: the checker finds their known deviations
// from the RFCs, and finds the same ones every time. Run with -update to
// rewrite the golden files.
func TestPeers(t *testing.T) {
	for _, peer := range []struct {
		name, pkg string
		command   func() (string, bool)
	}{
		{"aiosmtpd", "python3-aiosmtpd", func() (string, bool) {
			python := aiosmtpdPython()
			return python + " -m aiosmtpd -n -l 127.0.0.1:{port}", python != ""
		}},
		{"smtp-sink", "postfix", func() (string, bool) {
			_, err := os.Stat("/usr/sbin/smtp-sink")
			user := ""
			if os.Getuid() == 0 {
				user = "-u nobody " // smtp-sink refuses to run as root
			}
			return "/usr/sbin/smtp-sink " + user + "127.0.0.1:{port} 100", err == nil
		}},
	} {
		t.Run(peer.name, func(t *testing.T) {
			command, ok := peer.command()
			requirePeer(t, ok, peer.name, peer.pkg)
			code, out, errOut := runCommand(t, "-exec", command, "-json")
			got := goldenLines(jsonResults(t, out))
			golden := filepath.Join("testdata", "peers", peer.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("against %s, smtpcheck found (status %d):\n%s\nwant (%s):\n%s\nstderr:\n%s", peer.name, code, got, golden, want, errOut)
			}
			if wantCode := 0; strings.Contains(got, "FAIL ") {
				wantCode = 1
				if code != wantCode {
					t.Errorf("exit status %d, want %d", code, wantCode)
				}
			}
		})
	}
}

// runCommand is command, for a run that starts a server: it fails the
// test on a usage error.
func runCommand(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	code, stdout, stderr = command(t, args...)
	if code == cli.ExitUsage || stdout == "" {
		t.Fatalf("smtpcheck %q: status %d\n%s", args, code, stderr)
	}
	return code, stdout, stderr
}

// goldenLines says what a run found, in words that do not change from run
// to run: each case failed, with the exchange, or skipped, with why.
func goldenLines(results []jsonResult) string {
	var b strings.Builder
	for _, r := range results {
		id := r.Level + "/" + r.Name
		switch {
		case r.Result == Skip:
			fmt.Fprintf(&b, "SKIP %s: %s\n", id, r.Reason)
		case r.Result == Fail && r.Step != nil:
			got := strconv.Quote(r.Step.Got)
			if r.Step.Got == "" {
				got = "no reply"
			}
			fmt.Fprintf(&b, "FAIL %s: after %s, expected %s, got %s\n", id, describeCommand(r.Step.Command), r.Step.Expected, got)
		case r.Result == Fail:
			fmt.Fprintf(&b, "FAIL %s: %s\n", id, r.Reason)
		}
	}
	return b.String()
}

// TestHangingServer checks that a server that accepts connections and
// never answers makes the cases fail with a timeout, not the checker hang.
func TestHangingServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := make(chan net.Conn, 10)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			held <- conn // never read, never answered
		}
	}()
	defer func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	}()
	start := time.Now()
	code, out, errOut := runCommand(t, "-addr", l.Addr().String(), "-timeout", "300ms", "-run", "^basic/(greeting|noop)$", "-color", "never")
	if code != cli.ExitFailure {
		t.Errorf("exit status %d, want %d\n%s%s", code, cli.ExitFailure, out, errOut)
	}
	for _, want := range []string{"FAIL  basic/greeting", "reading reply for S: (?m)^220: read tcp", "i/o timeout", "0 passed, 2 failed, 0 skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("two cases against a silent server took %v", d)
	}
}

// TestJUnit checks that -junit writes XML that a CI server reads: a suite
// per level, the counts, a failure with its message.
func TestJUnit(t *testing.T) {
	ty := startToy(t, flawAcceptsAll)
	report := filepath.Join(t.TempDir(), "report.xml")
	code, out, _ := runCommand(t, "-addr", ty.addr(), "-run", "^basic/(unknown_command|noop)$|^tls/starttls$", "-junit", report)
	if code != cli.ExitFailure {
		t.Errorf("exit status %d, want %d:\n%s", code, cli.ExitFailure, out)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var suites junitSuites
	if err := xml.Unmarshal(data, &suites); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if suites.Tests != 3 || suites.Failures != 1 || suites.Skipped != 1 || len(suites.Suites) != 2 {
		t.Errorf("testsuites: %d tests, %d failures, %d skipped, %d suites; want 3, 1, 1, 2\n%s",
			suites.Tests, suites.Failures, suites.Skipped, len(suites.Suites), data)
	}
	basic := suites.Suites[0]
	if basic.Name != "basic" || len(basic.Cases) != 2 {
		t.Fatalf("first suite = %q with %d cases, want basic with 2\n%s", basic.Name, len(basic.Cases), data)
	}
	for _, c := range basic.Cases {
		if (c.Name == "unknown_command") != (c.Failure != nil) {
			t.Errorf("case %s: failure %v", c.Name, c.Failure)
		}
		if c.Failure != nil && !strings.Contains(c.Failure.Text, "got:      250 Ok") {
			t.Errorf("the failure says %q, want the reply that came", c.Failure.Text)
		}
	}
}

// TestInterrupt checks that SIGINT stops smtpcheck in the middle of a case
// and stops the server it started, and what that server started; and that
// so does the reader of its output going away ("smtpcheck … | head").
func TestInterrupt(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh")
	}
	t.Run("SIGINT", func(t *testing.T) {
		s := startChecking(t)
		s.waitCaseConnected(t)
		s.cmd.Process.Signal(os.Interrupt)
		s.waitExit(t)
		if !strings.Contains(s.stderr.String(), "smtpcheck: interrupted after 0 of 1 cases") {
			t.Errorf("stderr says nothing of the interruption:\n%s", s.stderr.String())
		}
		s.checkGone(t)
	})
	t.Run("output closed", func(t *testing.T) {
		// A case that waits for a reply that never comes follows the
		// first: it fails at its 2 s timeout, and only then writes, so
		// the run does not end before the output is closed even when
		// this test is slow to close it.
		cases := t.TempDir()
		hang := "# Waits for a second reply without sending anything.\n# level: basic\nsmtp hang.dialog\n\n-- hang.dialog --\nS: ^220\nS: ^250\n"
		if err := os.WriteFile(filepath.Join(cases, "zz_hang.txtar"), []byte(hang), 0o644); err != nil {
			t.Fatal(err)
		}
		s := startChecking(t, "-cases", cases, "-run", "^basic/(noop|zz_hang)$", "-timeout", "2s")
		// The server greets at once this time, so a line comes out.
		line, err := bufio.NewReader(s.stdout).ReadString('\n')
		if err != nil {
			t.Fatalf("no first line: %v\n%s", err, s.stderr.String())
		}
		if !strings.HasPrefix(line, "FAIL") && !strings.HasPrefix(line, "PASS") {
			t.Errorf("first line %q", line)
		}
		s.stdout.Close()
		s.waitExit(t)
		s.checkGone(t)
	})
}

// checking is smtpcheck running as a process against a server that
// writes its pid and its child's to a file.
type checking struct {
	cmd         *exec.Cmd
	stdout      io.ReadCloser
	stderr      *bytes.Buffer
	done        chan error
	pids, trace string
}

// startChecking runs smtpcheck against an smtpd started through sh, which
// also starts a sleep in the background. With no args, the server waits a
// minute before its greeting, so the first case is still waiting for it
// when the test acts; its trace shows when the case connected.
func startChecking(t *testing.T, args ...string) *checking {
	t.Helper()
	dir := t.TempDir()
	s := &checking{pids: filepath.Join(dir, "pids"), trace: filepath.Join(dir, "trace"), stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	delay := "0s"
	if len(args) == 0 {
		delay = "1m"
		args = []string{"-run", "^basic/greeting$"}
	}
	server := fmt.Sprintf("sh -c 'echo $$ > %s; sleep 300 & echo $! >> %[1]s; exec smtpd -l 127.0.0.1 -p {port} -M -1 -d %s -v -greet-delay %s -shutdown-timeout 1s > %s'",
		s.pids, dir, delay, s.trace)
	s.cmd = exec.Command("smtpcheck", append([]string{"-exec", server, "-timeout", "1m"}, args...)...)
	var err error
	if s.stdout, err = s.cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	return s
}

// waitCaseConnected waits until the server's trace shows the first case's
// connection (session 1 is smtpcheck's probe).
func (s *checking) waitCaseConnected(t *testing.T) {
	t.Helper()
	caseConnected := regexp.MustCompile(`(?m)^\S+ \[2\] \* connected`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if data, _ := os.ReadFile(s.trace); caseConnected.Match(data) {
			return
		}
		if time.Now().After(deadline) {
			s.cmd.Process.Kill()
			t.Fatalf("the case did not connect\n%s", s.stderr.String())
		}
	}
}

// waitExit waits for smtpcheck to exit, with status 1.
func (s *checking) waitExit(t *testing.T) {
	t.Helper()
	go io.Copy(io.Discard, s.stdout)
	select {
	case err := <-s.done:
		if code := s.cmd.ProcessState.ExitCode(); code != cli.ExitFailure {
			t.Errorf("smtpcheck: %v, want status %d\n%s", err, cli.ExitFailure, s.stderr.String())
		}
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		t.Fatalf("smtpcheck still runs 20 s on")
	}
}

// checkGone checks that neither the server nor its child runs any more.
func (s *checking) checkGone(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(s.pids)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range strings.Fields(string(data)) {
		pid, _ := strconv.Atoi(field)
		// A process killed a moment ago may still be on its way out.
		for deadline := time.Now().Add(5 * time.Second); smtpdproc.Runs(pid, s.cmd.Process.Pid); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Errorf("process %d still runs after smtpcheck stopped", pid)
				break
			}
		}
	}
}
