package smtpd_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/tpe-protos/smtpd"
)

// benchMessage is a 2 KiB message (headers and body, CRLF line endings) with
// no line starting with a dot.
var benchMessage = func() []byte {
	var b bytes.Buffer
	b.WriteString("From: <bench@example.net>\r\nTo: <user@example.org>\r\nSubject: benchmark\r\n" +
		"Date: Fri, 27 Nov 2026 14:25:11 +0000\r\nMessage-ID: <bench@example.net>\r\n\r\n")
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len()+len(line) <= 2048 {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("y", 2048-b.Len()-2) + "\r\n")
	return b.Bytes()
}()

// startBenchServer serves a fresh data directory on 127.0.0.1: a plain
// server, without smtpdtest's recording of every message, unless configure
// changes its Config.
func startBenchServer(tb testing.TB, configure ...func(*smtpd.Config)) string {
	tb.Helper()
	cfg := smtpd.Config{
		Hostname: "bench.test",
		DataDir:  tb.TempDir(),
		Logger:   slog.New(slog.DiscardHandler),
	}
	for _, f := range configure {
		f(&cfg)
	}
	srv, err := smtpd.NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(l)
	tb.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// benchConn is a minimal SMTP client, so that the benchmark measures the
// server rather than a client library.
type benchConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialBench(addr string) (*benchConn, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &benchConn{conn: conn, br: bufio.NewReader(conn)}
	if err := c.expect("220"); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.cmd("EHLO bench.client\r\n", "250"); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// expect reads one reply (all its lines) and checks its code.
func (c *benchConn) expect(code string) error {
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, code) {
			return fmt.Errorf("got %q, want %s", line, code)
		}
		if len(line) < 4 || line[3] != '-' {
			return nil
		}
	}
}

func (c *benchConn) cmd(line, code string) error {
	if _, err := io.WriteString(c.conn, line); err != nil {
		return err
	}
	return c.expect(code)
}

// send runs one transaction, one command at a time (no pipelining).
func (c *benchConn) send(rcpt string) error {
	if err := c.cmd("MAIL FROM:<bench@example.net> SIZE=2048\r\n", "250"); err != nil {
		return err
	}
	if err := c.cmd("RCPT TO:<"+rcpt+">\r\n", "250"); err != nil {
		return err
	}
	if err := c.cmd("DATA\r\n", "354"); err != nil {
		return err
	}
	if _, err := c.conn.Write(benchMessage); err != nil {
		return err
	}
	return c.cmd(".\r\n", "250")
}

func (c *benchConn) quit() error {
	err := c.cmd("QUIT\r\n", "221")
	c.conn.Close()
	return err
}

// BenchmarkTransaction measures one whole session: connect, EHLO, MAIL,
// RCPT, DATA with a 2 KiB message stored durably (fsync of the file and of
// new/), QUIT.
func BenchmarkTransaction(b *testing.B) {
	benchTransactions(b, startBenchServer(b))
}

// benchTransactions runs whole sessions against addr, one after another.
func benchTransactions(b *testing.B, addr string) {
	b.SetBytes(int64(len(benchMessage)))
	// Allocations are the whole process's: the client's share (a
	// connection, a bufio.Reader, the reply strings) is counted too.
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c, err := dialBench(addr)
		if err == nil {
			err = c.send(fmt.Sprintf("user%03d@example.org", i%100))
		}
		if err == nil {
			err = c.quit()
		}
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkConcurrent16 measures 16 concurrent sessions, each sending
// messages one after another (2 KiB, durable, 100 mailboxes), as workload (a)
// of the benchmark harness does.
func BenchmarkConcurrent16(b *testing.B) {
	addr := startBenchServer(b)
	b.SetBytes(int64(len(benchMessage)))
	b.ReportAllocs()
	// RunParallel starts GOMAXPROCS × parallelism goroutines.
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((16 + procs - 1) / procs)
	b.RunParallel(func(pb *testing.PB) {
		c, err := dialBench(addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.quit()
		for i := 0; pb.Next(); i++ {
			if err := c.send(fmt.Sprintf("user%03d@example.org", i%100)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
