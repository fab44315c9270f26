package smtpd_test

import (
	"bufio"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
)

// scrape fetches http://addr/metrics and returns its samples by series,
// "name" or `name{label="value"}`, as Prometheus's text format writes them.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	hc := &http.Client{Timeout: mcWait}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	samples := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("GET /metrics: bad sample line %q", line)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples
}

// TestPrometheusExporter runs the smtpd command with -metrics-http on a
// free port, sends it one message and scrapes /metrics: the series are
// exact, agree with what the client wrote and read, and agree with the
// management protocol.
func TestPrometheusExporter(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(), "NO_COLOR=1"}
	p := startSmtpdForTest(t, dir, env, "-d", "data", "-hostname", "mx.test", "-metrics-http", "127.0.0.1:0")
	httpAddr := p.httpAddr
	if httpAddr == "" {
		t.Fatalf("no \"Listening on HTTP\" line; stdout:\n%s", p.stdout.bytes())
	}

	// Before any traffic.
	before := scrape(t, httpAddr)
	for series, want := range map[string]float64{
		"smtpd_connections_total":                 0,
		`smtpd_messages_total{result="accepted"}`: 0,
		`smtpd_bytes_total{direction="in"}`:       0,
		"smtpd_sessions_active":                   0,
		"smtpd_max_message_bytes":                 smtpd.DefaultMaxMessageBytes,
		"smtpd_trace_enabled":                     0,
	} {
		if got, ok := before[series]; !ok || got != want {
			t.Errorf("before traffic: %s = %v (present: %v), want %v", series, got, ok, want)
		}
	}

	// One message, counting what the client writes and reads.
	var in, out atomic.Uint64
	conn, err := net.DialTimeout("tcp", p.addr, mcWait)
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingConn{Conn: conn, in: &in, out: &out}
	c := client.NewClient(counted)
	c.Timeout = mcWait
	steps := []func() error{
		func() error { _, err := c.Greeting(); return err },
		func() error { _, err := c.Hello("client.test"); return err },
		func() error { _, err := c.Mail("bob@example.net"); return err },
		func() error { _, err := c.Rcpt("alice@example.org"); return err },
		func() error { _, err := c.Data([]byte("Subject: scraped\n\nHello, Prometheus.\n")); return err },
		func() error { return c.Send("QUIT") },
		func() error { _, err := c.ReadReply(); return err },
		// The server counts its last reply's bytes before it
		// closes: after the end of the connection, all are counted.
		func() error { _, err := io.Copy(io.Discard, counted); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("SMTP step %d: %v", i, err)
		}
	}

	m := scrape(t, httpAddr)
	want := map[string]float64{
		"smtpd_connections_total":                 1,
		`smtpd_messages_total{result="accepted"}`: 1,
		`smtpd_messages_total{result="rejected"}`: 0,
		`smtpd_messages_total{result="failed"}`:   0,
		`smtpd_bytes_total{direction="in"}`:       float64(in.Load()),
		`smtpd_bytes_total{direction="out"}`:      float64(out.Load()),
		`smtpd_commands_total{verb="EHLO"}`:       1,
		`smtpd_commands_total{verb="MAIL"}`:       1,
		`smtpd_commands_total{verb="RCPT"}`:       1,
		`smtpd_commands_total{verb="DATA"}`:       1,
		`smtpd_commands_total{verb="QUIT"}`:       1,
		`smtpd_replies_total{code="220"}`:         1,
		`smtpd_replies_total{code="250"}`:         4, // EHLO, MAIL, RCPT, end of data
		`smtpd_replies_total{code="354"}`:         1,
		`smtpd_replies_total{code="221"}`:         1,
	}
	for series, w := range want {
		if got, ok := m[series]; !ok || got != w {
			t.Errorf("%s = %v (present: %v), want %v", series, got, ok, w)
		}
	}
	if up, ok := m["smtpd_uptime_seconds"]; !ok || up <= 0 || up > 600 {
		t.Errorf("smtpd_uptime_seconds = %v (present: %v)", up, ok)
	}
	for _, series := range []string{"go_goroutines", "process_open_fds"} {
		if _, ok := m[series]; !ok {
			t.Errorf("%s missing: the Go and process collectors are registered", series)
		}
	}

	// The management protocol serves the same numbers.
	keyHex, err := os.ReadFile(filepath.Join(dir, "data", "metrics.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(keyHex)))
	if err != nil {
		t.Fatal(err)
	}
	mc := dialMC(t, p.metricsAddr, key, time.Second)
	for _, check := range []struct {
		cmd  smtpd.Command
		want uint64
	}{
		{smtpd.CmdHistoricalConnections, 1},
		{smtpd.CmdMessages, 1},
		{smtpd.CmdBytesTransferred, in.Load() + out.Load()},
	} {
		if v, err := mc.Do(t.Context(), check.cmd, 0); err != nil || v != check.want {
			t.Errorf("management %v = %d, %v; want %d as exported", check.cmd, v, err, check.want)
		}
	}
	mc.SetVerbose(t.Context(), true)
	mc.SetMaxSize(t.Context(), 4096)
	m = scrape(t, httpAddr)
	if m["smtpd_trace_enabled"] != 1 || m["smtpd_max_message_bytes"] != 4096 {
		t.Errorf("after verbose-on and set-max-size 4096: trace %v, max size %v", m["smtpd_trace_enabled"], m["smtpd_max_message_bytes"])
	}

	// GET /metrics is served, and not its neighbours (-metrics-http is
	// now the HTTP view's listener: "/" is its list page).
	for _, path := range []string{"/metric", "/metrics/x"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}
	resp, err := http.Post("http://"+httpAddr+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %s, want 405", resp.Status)
	}

	if err := p.stop(syscall.SIGTERM, mcWait); err != nil {
		t.Errorf("smtpd exit: %v\nstderr:\n%s", err, p.stderr.bytes())
	}
	if _, err := net.DialTimeout("tcp", httpAddr, time.Second); err == nil {
		t.Errorf("the exporter still listens after the server exited")
	}
}
