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
	requirePeer(t, "bash", "bash")
	requirePeer(t, "nc", "netcat-openbsd")
	const n = 20
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
	defer stuck.Stop()

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
	if sessions := srv.SMTP.Stats().Sessions; sessions != n {
		t.Fatalf("the server holds %d sessions, want %d; the script said:\n%s", sessions, n, strings.Join(said, "\n"))
	}

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
	deadline := time.Now().Add(10 * time.Second)
	for srv.SMTP.Stats().Sessions > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the server sees each close; no event says "all"
	}
	if sessions := srv.SMTP.Stats().Sessions; sessions != 0 {
		t.Errorf("%d sessions still open after the script closed its connections", sessions)
	}
}
