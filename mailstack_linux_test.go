package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Helpers for the tests that put smtpd between the real systems of a mail
// stack (postfix_linux_test.go, dovecot_linux_test.go): throwaway daemons
// that live in a test's temporary directory, are found by their pid and
// leave nothing running.

// mailStackWait bounds every wait on a daemon of the mail stack: its start,
// a delivery, its stop.
const mailStackWait = 30 * time.Second

// requireRoot skips the test when it does not run as root, for daemons
// that cannot start otherwise.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("not root: %s", why)
	}
}

// requireAccount returns the uid and gid of a system user (or, with
// group, only the gid of a system group) that a Debian package creates,
// with the same skip-or-fail rule as requirePeer.
func requireAccount(t *testing.T, name, pkg string, group bool) (uid, gid int) {
	t.Helper()
	var err error
	if group {
		var g *user.Group
		if g, err = user.LookupGroup(name); err == nil {
			gid, _ = strconv.Atoi(g.Gid)
			return -1, gid
		}
	} else {
		var u *user.User
		if u, err = user.Lookup(name); err == nil {
			uid, _ = strconv.Atoi(u.Uid)
			gid, _ = strconv.Atoi(u.Gid)
			return uid, gid
		}
	}
	if os.Getenv(peersEnv) == "1" {
		t.Fatalf("account %q not found and %s=1: the Debian package %q creates it (%v)", name, peersEnv, pkg, err)
	}
	t.Skipf("account %q not found (Debian package %q creates it)", name, pkg)
	return -1, -1
}

// openUp lets other users (the daemons' own: postfix, dovecot, the mail
// user) reach dir, which t.TempDir makes private: dir and each of its
// parents below the system's temporary directory get mode 0755.
func openUp(t *testing.T, dir string) {
	t.Helper()
	top := filepath.Clean(os.TempDir())
	for d := filepath.Clean(dir); strings.HasPrefix(d, top+string(filepath.Separator)); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a daemon that cannot be handed a listener nor report the port it chose.
// The caller retries with another if the daemon then fails to bind it.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// mailTool runs a command of a mail stack, bounded in time, and returns its
// combined output; it fails the test unless the command exits 0.
func mailTool(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, err := mailToolErr(t, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return out
}

// mailToolErr is mailTool returning the command's error. It also serves in
// a test's cleanup, when the test's context is over.
func mailToolErr(t *testing.T, stdin []byte, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mailStackWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	return cmd.CombinedOutput()
}

// readPid reads a daemon's pid file, waiting for it to appear.
func readPid(path string) (int, error) {
	deadline := time.Now().Add(mailStackWait)
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				return pid, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, errors.New("no pid in " + path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procStat returns the state and parent of process pid, from
// /proc/PID/stat; ok is false when there is no such process.
func procStat(pid int) (state byte, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) state ppid …"; comm may hold anything but ends at the
	// last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(fields[1])
	return fields[0][0], ppid, true
}

// alive reports whether process pid runs: it exists and is not a zombie
// waiting for its parent to collect it.
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// descendants returns the live processes below pid.
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(p); ok && alive(p) {
			children[ppid] = append(children[ppid], p)
		}
	}
	var all []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		all = append(all, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return all
}

// stopDaemon stops the daemon whose master process is pid and everything
// it started: stop (a command, or SIGTERM when nil) asks it to go, then
// each process gets up to mailStackWait to exit, and SIGKILL after that.
// The test fails if any process survives, or had to be killed.
func stopDaemon(t *testing.T, name string, pid int, stop func() error) {
	t.Helper()
	procs := append([]int{pid}, descendants(pid)...)
	if stop == nil {
		stop = func() error { return syscall.Kill(pid, syscall.SIGTERM) }
	}
	if err := stop(); err != nil {
		t.Errorf("stopping %s (pid %d): %v", name, pid, err)
	}
	deadline := time.Now().Add(mailStackWait)
	for _, p := range procs {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(p) {
			t.Errorf("%s: process %d still running %v after the stop; killing it", name, p, mailStackWait)
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// TestREADMEMailStack checks that README.md's "Behind Postfix, in front of
// Dovecot" shows the configuration the mail stack tests write, each as a
// code block of its own.
func TestREADMEMailStack(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, conf := range []string{postfixLMTPConf, postfixLMTPSocketConf, postfixRelayConf, dovecotConf} {
		if !bytes.Contains(readme, []byte("```\n"+conf+"```\n")) {
			t.Errorf("README.md has no code block holding exactly:\n%s", conf)
		}
	}
}
