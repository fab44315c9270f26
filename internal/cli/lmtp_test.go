//go:build unix

package cli

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is the command's output, written by its goroutines and
// read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// backgroundSmtpd runs the smtpd command in the background until the test stops
// it with the returned function, which gives its exit status.
func backgroundSmtpd(t *testing.T, args ...string) (stdout, stderr *lockedBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = new(lockedBuffer), new(lockedBuffer)
	status := make(chan int, 1)
	go func() { status <- Smtpd(ctx, args, strings.NewReader(""), stdout, stderr) }()
	var once sync.Once
	var code int
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-status:
			case <-time.After(30 * time.Second):
				t.Fatal("smtpd did not stop within 30 s")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stdout, stderr, stop
}

// waitFor waits until out holds want, or the command has ended.
func waitFor(t *testing.T, out *lockedBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output within 10 s:\n%s", want, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLMTPSocket runs smtpd -lmtp-socket with no TCP port (-p -1): it
// serves LMTP on a Unix socket of mode 0660, replaces a socket left behind
// by a server that is gone, and removes its own when it stops.
func TestLMTPSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "lmtp.sock")
	// A socket left behind: nobody listens on it.
	old, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()

	stdout, stderr, stop := backgroundSmtpd(t, "-lmtp-socket", sock, "-p", "-1", "-M", "-1", "-d", filepath.Join(dir, "data"), "-hostname", "mx.test")
	waitFor(t, stdout, "Listening on UNIX "+sock+"\n")
	if strings.Contains(stdout.String(), "Listening on TCP") {
		t.Errorf("-p -1 still listens on TCP:\n%s", stdout)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode(); mode&os.ModeSocket == 0 || mode.Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", mode)
	}

	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if line, _ := r.ReadString('\n'); line != "220 mx.test LMTP smtpd\r\n" {
		t.Errorf("greeting %q", line)
	}
	conn.Write([]byte("LHLO client.test\r\nQUIT\r\n"))
	var replies []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		replies = append(replies, strings.TrimSpace(line))
	}
	if len(replies) == 0 || replies[0] != "250-mx.test" || replies[len(replies)-1] != "221 2.0.0 Bye" {
		t.Errorf("LHLO and QUIT got %q", replies)
	}

	// A second server on the same socket is refused: one listens there.
	_, stderr2, stop2 := backgroundSmtpd(t, "-lmtp-socket", sock, "-p", "-1", "-M", "-1", "-d", filepath.Join(dir, "data2"))
	if code := stop2(); code != exitFailure || !strings.Contains(stderr2.String(), "a server listens there already") {
		t.Errorf("second server on the socket: exit %d, stderr %q; want 1 and a server listens there", code, stderr2)
	}

	if code := stop(); code != exitOK {
		t.Errorf("exit status %d, stderr:\n%s", code, stderr)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket is still there after the stop: %v", err)
	}
}

func TestLMTPFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-p", "-1"},
		{"-p", "-2", "-lmtp-socket", "x.sock"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Smtpd(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != exitUsage ||
			strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("smtpd %q: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
}
