package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
)

// managedServer is a server with its management protocol on a free
// loopback port, and its key in dir/metrics.key, as the smtpd command
// leaves them.
type managedServer struct {
	srv  *smtpd.Server
	dir  string
	port string // the management port
	addr string // the SMTP address
}

func startManaged(t *testing.T) *managedServer {
	t.Helper()
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0x5a}, 32)
	if err := os.WriteFile(filepath.Join(dir, "metrics.key"), []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := smtpd.NewServer(smtpd.Config{DataDir: dir, MetricsKey: key, Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeMetrics(pc)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	return &managedServer{srv: srv, dir: dir, port: port, addr: l.Addr().String()}
}

// hold opens n sessions and waits for their greetings; they close with the
// test.
func (m *managedServer) hold(t *testing.T, n int) {
	t.Helper()
	for range n {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
			t.Fatalf("greeting: %q, %v", line, err)
		}
	}
}

// run runs metrics_client against the server with args after -M and -d.
func (m *managedServer) run(t *testing.T, stdout io.Writer, args ...string) (code int, stderr string) {
	t.Helper()
	var errOut bytes.Buffer
	args = append([]string{"-M", m.port, "-d", m.dir}, args...)
	code = MetricsClient(t.Context(), args, strings.NewReader(""), stdout, &errOut)
	return code, errOut.String()
}

// TestValuesLabelledOnTerminal: on a terminal each value says what it is;
// into a pipe it stays bare, as scripts read it.
func TestValuesLabelledOnTerminal(t *testing.T) {
	m := startManaged(t)
	m.hold(t, 2)
	for _, tc := range []struct{ args, bare, labelled string }{
		{"concurrent", "2", "concurrent connections: 2"},
		{"verbose-off", "0", "trace: off"},
		{"verbose-on", "1", "trace: on"},
		{"max-size", "10240000", "maximum message size: 10240000 bytes"},
		{"filter", "0", "content filter: off"},
	} {
		var piped bytes.Buffer
		if code, stderr := m.run(t, &piped, tc.args); code != 0 || piped.String() != tc.bare+"\n" {
			t.Errorf("%s into a pipe: exit %d, %q, stderr %q; want %q", tc.args, code, piped.String(), stderr, tc.bare+"\n")
		}
		tty := openTerminal(t)
		code, stderr := m.run(t, tty.out, tc.args)
		if got := tty.output(); code != 0 || got != tc.labelled+"\r\n" {
			t.Errorf("%s on a terminal: exit %d, %q, stderr %q; want %q", tc.args, code, got, stderr, tc.labelled+"\r\n")
		}
	}
}

// TestWatch: watch shows the connections the server holds, one line per
// sample into a pipe, and one screen redrawn in place on a terminal.
func TestWatch(t *testing.T) {
	m := startManaged(t)
	m.hold(t, 3)
	var piped bytes.Buffer
	if code, stderr := m.run(t, &piped, "watch", "-interval", "10ms", "-count", "3"); code != 0 || stderr != "" {
		t.Fatalf("watch into a pipe: exit %d, stderr %q", code, stderr)
	}
	line := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} concurrent=3 historical=3 bytes=\d+ messages=0$`)
	lines := strings.Split(strings.TrimSuffix(piped.String(), "\n"), "\n")
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Errorf("watch line %q does not match %v", l, line)
		}
	}
	if len(lines) != 3 {
		t.Errorf("watch -count 3 printed %d lines:\n%s", len(lines), piped.String())
	}

	tty := openTerminal(t)
	if code, stderr := m.run(t, tty.out, "watch", "-interval", "10ms", "-count", "2"); code != 0 || stderr != "" {
		t.Fatalf("watch on a terminal: exit %d, stderr %q", code, stderr)
	}
	screen := tty.output()
	if n := strings.Count(screen, "\x1b[8F"); n != 1 {
		t.Errorf("the second sample went back up over the first %d times, want once:\n%q", n, screen)
	}
	if n := strings.Count(screen, "concurrent connections            3\r\n"); n != 2 {
		t.Errorf("the screen shows 3 concurrent connections %d times, want 2:\n%q", n, screen)
	}
}

// TestErrorsTeach: a refusal says what it most likely means.
func TestErrorsTeach(t *testing.T) {
	m := startManaged(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"filter-on"}, "UNEXPECTED_ERROR: the server has no content filter (start it with -filter)\n"},
		{[]string{"set-max-size", "0"}, "INVALID_ARGUMENT: the size must be from 1 to 9223372036854775807 bytes\n"},
		{[]string{"set-max-size", "-5"}, "metrics_client: set-max-size -5: a size cannot be negative: give the largest message in bytes, 1 or more (see metrics_client -h)\n"},
	} {
		var out bytes.Buffer
		if _, stderr := m.run(t, &out, tc.args...); stderr != tc.want {
			t.Errorf("%v: stderr %q, want %q", tc.args, stderr, tc.want)
		}
	}
	other := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(other, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code, stderr := m.run(t, &out, "-key", other, "-timeout", "100ms", "messages")
	if want := "AUTH_FAILED: wrong key? the server's key is DIR/metrics.key, DIR being its -d; this client used " + other; code != 1 || !strings.HasPrefix(stderr, want) {
		t.Errorf("wrong key: exit %d, stderr %q; want 1 and %q…", code, stderr, want)
	}
}

// TestDataDirFromEnvironment: with SMTPD_DATA set, smtpd keeps its data
// there and metrics_client finds the key from any directory; without it,
// the error for a missing key says what to do.
func TestDataDirFromEnvironment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	t.Setenv(dataDirEnv, dir)
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	r, w := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Smtpd(ctx, []string{"-l", "127.0.0.1", "-p", "0", "-M", "0", "-hostname", "mx.test"}, strings.NewReader(""), w, io.Discard)
		w.Close()
	}()
	t.Cleanup(func() {
		cancel()
		io.Copy(io.Discard, r)
		<-done
	})
	var port string
	for sc := bufio.NewScanner(r); port == "" && sc.Scan(); {
		if addr, ok := strings.CutPrefix(sc.Text(), "Listening on UDP "); ok {
			_, port, _ = net.SplitHostPort(addr)
		}
	}
	if port == "" {
		t.Fatalf("smtpd exited with status %d before listening", <-done)
	}
	if _, err := os.Stat(filepath.Join(dir, "metrics.key")); err != nil {
		t.Fatalf("smtpd with %s=%s: %v", dataDirEnv, dir, err)
	}
	t.Chdir(t.TempDir()) // elsewhere again: only the variable leads to the key
	var out bytes.Buffer
	var errOut bytes.Buffer
	if code := MetricsClient(t.Context(), []string{"-M", port, "historical"}, strings.NewReader(""), &out, &errOut); code != 0 || out.String() != "0\n" {
		t.Errorf("metrics_client with %s set: exit %d, %q, stderr %q", dataDirEnv, code, out.String(), errOut.String())
	}

	t.Setenv(dataDirEnv, "")
	errOut.Reset()
	if code := MetricsClient(t.Context(), []string{"-M", port, "historical"}, strings.NewReader(""), &out, &errOut); code != exitUsage {
		t.Errorf("metrics_client without the key: exit %d, want %d", code, exitUsage)
	}
	for _, want := range []string{"open smtpd-data/metrics.key", "-d DIR", dataDirEnv + "=DIR", "-key FILE"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("missing key error %q does not say %q", errOut.String(), want)
		}
	}
}
