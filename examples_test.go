package smtpd_test

import (
	"bufio"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd/smtpdtest"
)

// TestStressScript runs examples/stress.sh, the classroom stress demo, with
// a small N: every connection is greeted and held, the script says so, and
// Ctrl-C (SIGINT) closes them all and leaves no nc behind.
func TestStressScript(t *testing.T) {
	const n = 20
	srv, cmd, lines, said := startStress(t, n)
	group := cmd.Process.Pid

	// Ctrl-C: the script closes every connection and exits 0.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for line := range lines {
		said = append(said, line)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGINT: %v; the script said:\n%s", err, strings.Join(said, "\n"))
	}
	if last := said[len(said)-1]; last != fmt.Sprintf("stress.sh: closing %d connections", n) {
		t.Errorf("last line %q, want the closing message", last)
	}
	if err := syscall.Kill(-group, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("processes of the script's group still run after it exited (kill -0: %v)", err)
	}
	waitNoSessions(t, srv)
}

// TestStressScriptKilled kills the script itself, as a second Ctrl-C
// during its cleanup or a closed terminal can: its nc processes must not
// outlive it, holding their connections open for ever.
func TestStressScriptKilled(t *testing.T) {
	srv, cmd, _, _ := startStress(t, 5)
	if err := cmd.Process.Kill(); err != nil { // the script only, not its nc
		t.Fatal(err)
	}
	cmd.Wait()
	waitNoSessions(t, srv)
}

// startStress starts examples/stress.sh with n connections against a test
// server, in a process group of its own that the test kills at its end,
// and returns once the script says that all n were greeted: the server,
// the script, the rest of its output, and what it said so far.
func startStress(t *testing.T, n int) (*smtpdtest.Server, *exec.Cmd, <-chan string, []string) {
	t.Helper()
	requirePeer(t, "bash", "bash")
	requirePeer(t, "nc", "netcat-openbsd")
	srv := smtpdtest.NewServer(t)
	_, port, _ := strings.Cut(srv.Addr, ":")
	cmd := exec.Command("bash", "examples/stress.sh", strconv.Itoa(n), "127.0.0.1", port)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its group: the script and its nc
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	group := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-group, syscall.SIGKILL) })
	// Bounded: whatever happens, the script is gone after a minute.
	stuck := time.AfterFunc(time.Minute, func() { syscall.Kill(-group, syscall.SIGKILL) })
	t.Cleanup(func() { stuck.Stop() })

	lines := make(chan string)
	go func() {
		defer close(lines)
		for sc := bufio.NewScanner(out); sc.Scan(); {
			lines <- sc.Text()
		}
	}()
	var said []string
	for line := range lines {
		said = append(said, line)
		if line == fmt.Sprintf("stress.sh: %d greeted (220), 0 refused (421)", n) {
			break
		}
	}
	if sessions := srv.SMTP.Stats().Sessions; sessions != int64(n) {
		t.Fatalf("the server holds %d sessions, want %d; the script said:\n%s", sessions, n, strings.Join(said, "\n"))
	}
	return srv, cmd, lines, said
}

// waitNoSessions fails the test unless the server's sessions all end
// within 10 s.
func waitNoSessions(t *testing.T, srv *smtpdtest.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.SMTP.Stats().Sessions > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the server sees each close; no event says "all"
	}
	if sessions := srv.SMTP.Stats().Sessions; sessions != 0 {
		t.Errorf("%d sessions still open 10 s after the script ended", sessions)
	}
}
