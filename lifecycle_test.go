package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
)

// The lifecycle tests drive the Go API in-process, as an embedding program
// would: NewServer (or a zero-value Server), a listener on 127.0.0.1:0,
// Serve in a goroutine, then Shutdown or Close (the pattern of net/http's Server).

// lcWait bounds every wait of these tests for the server or a client.
const lcWait = 10 * time.Second

// lcConfig returns a Config for a test server: a name of its own, a
// temporary data directory and the test's output for logs.
func lcConfig(t *testing.T) smtpd.Config {
	return smtpd.Config{
		Hostname: "mx.test",
		DataDir:  t.TempDir(),
		Logger:   slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

// lcListen returns a listener on a free loopback port.
func lcListen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// lcServer is a Server being served by Serve in a goroutine.
type lcServer struct {
	srv    *smtpd.Server
	addr   string
	served chan struct{} // closed when Serve has returned
	err    error         // Serve's result, once served is closed
}

// lcServe serves srv on a free loopback port. The test's end closes the
// server and checks that Serve returned.
func lcServe(t *testing.T, srv *smtpd.Server) *lcServer {
	t.Helper()
	l := lcListen(t)
	s := &lcServer{srv: srv, addr: l.Addr().String(), served: make(chan struct{})}
	go func() {
		s.err = srv.Serve(l)
		close(s.served)
	}()
	t.Cleanup(func() {
		srv.Close()
		select {
		case <-s.served:
		case <-time.After(lcWait):
			t.Errorf("Serve still running %v after Close", lcWait)
		}
	})
	return s
}

// lcStart creates a server with cfg and serves it.
func lcStart(t *testing.T, cfg smtpd.Config) *lcServer {
	t.Helper()
	srv, err := smtpd.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return lcServe(t, srv)
}

// serveResult waits for Serve to return and gives its error.
func (s *lcServer) serveResult(t *testing.T) error {
	t.Helper()
	select {
	case <-s.served:
		return s.err
	case <-time.After(lcWait):
		t.Fatalf("Serve did not return within %v", lcWait)
		return nil
	}
}

// shutdownAsync runs Shutdown(ctx) in a goroutine; its result arrives on
// the channel.
func shutdownAsync(srv *smtpd.Server, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	return done
}

func waitErr(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(lcWait):
		t.Fatalf("%s did not return within %v", what, lcWait)
		return nil
	}
}

// dialGreeted connects to addr and reads the greeting; the test's end
// closes the connection.
func dialGreeted(t *testing.T, addr string) (*client.Client, *client.Reply) {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = lcWait
	t.Cleanup(func() { c.Close() })
	r, err := c.Greeting()
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return c, r
}

// dialReady connects to addr and says EHLO.
func dialReady(t *testing.T, addr, helo string) *client.Client {
	t.Helper()
	c, _ := dialGreeted(t, addr)
	if _, err := c.Hello(helo); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

// expectReply reads a reply and checks its code and enhanced code (any,
// when enh is "").
func expectReply(t *testing.T, c *client.Client, code int, enh string) *client.Reply {
	t.Helper()
	r, err := c.ReadReply()
	if err != nil {
		t.Fatalf("reading a reply: %v; want %d %s", err, code, enh)
	}
	if r.Code != code || enh != "" && r.Enhanced != enh {
		t.Fatalf("got reply %q, want %d %s", r, code, enh)
	}
	return r
}

// expectClosed checks that the server has closed the connection: the next
// read finds its end, with nothing more said.
func expectClosed(t *testing.T, c *client.Client) {
	t.Helper()
	r, err := c.ReadReply()
	switch {
	case err == nil:
		t.Fatalf("got reply %q, want the connection closed", r)
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
	default:
		t.Fatalf("got %v, want the connection closed (EOF)", err)
	}
}

// startData opens a transaction from bob to rcpt on c and sends DATA.
func startData(t *testing.T, c *client.Client, rcpt string) {
	t.Helper()
	if _, err := c.Mail("bob@example.net"); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	if _, err := c.Rcpt(rcpt); err != nil {
		t.Fatalf("RCPT: %v", err)
	}
	r, err := c.Cmd("DATA")
	if err != nil || r.Code != 354 {
		t.Fatalf("DATA: %v %v; want 354", r, err)
	}
}

// sendOne delivers msg (wire form) from bob to rcpt over a new session and
// returns the 250 reply.
func sendOne(t *testing.T, addr, rcpt string, msg []byte) *client.Reply {
	t.Helper()
	c := dialReady(t, addr, "client.test")
	if _, err := c.Mail("bob@example.net"); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	if _, err := c.Rcpt(rcpt); err != nil {
		t.Fatalf("RCPT: %v", err)
	}
	r, err := c.Data(msg)
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
	return r
}

// mailboxFiles returns the contents of the files in new/ of mailbox box
// under root, and checks that tmp/ is empty.
func mailboxFiles(t *testing.T, root, box string) [][]byte {
	t.Helper()
	dir := filepath.Join(root, box)
	if tmp, err := os.ReadDir(filepath.Join(dir, "tmp")); err == nil && len(tmp) != 0 {
		t.Errorf("%s/tmp is not empty: %d files", dir, len(tmp))
	}
	entries, err := os.ReadDir(filepath.Join(dir, "new"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var files [][]byte
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	return files
}

var lcMessage = []byte("From: <bob@example.net>\r\nTo: <alice@example.org>\r\nSubject: lifecycle\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <lifecycle@example.net>\r\n\r\nHello.\r\n")

func TestServeAfterShutdownOrClose(t *testing.T) {
	for _, zero := range []bool{false, true} {
		for _, stop := range []string{"Shutdown", "Close"} {
			name := "NewServer/" + stop
			if zero {
				name = "zero-value/" + stop
			}
			t.Run(name, func(t *testing.T) {
				cfg := lcConfig(t)
				srv := &smtpd.Server{Config: cfg}
				if !zero {
					var err error
					if srv, err = smtpd.NewServer(cfg); err != nil {
						t.Fatal(err)
					}
				}
				var err error
				if stop == "Shutdown" {
					err = srv.Shutdown(t.Context())
				} else {
					err = srv.Close()
				}
				if err != nil {
					t.Fatalf("%s: %v", stop, err)
				}
				l := lcListen(t)
				if err := srv.Serve(l); !errors.Is(err, smtpd.ErrServerClosed) {
					t.Fatalf("Serve after %s = %v, want ErrServerClosed", stop, err)
				}
				// net/http's contract: Serve always closes the listener.
				if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept after Serve returned: %v, want net.ErrClosed", err)
				}
				if srv.Addr() != nil {
					t.Errorf("Addr() = %v after a refused Serve, want nil", srv.Addr())
				}
				srv.Close()
				if open := openFilesUnder(t, cfg.DataDir); len(open) > 0 {
					t.Errorf("after %s, Serve and Close, the server still holds open: %q", stop, open)
				}
			})
		}
	}
}

// openFilesUnder lists the files under dir that this process holds open,
// from /proc/self/fd; it skips the check where there is no /proc.
func openFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Logf("not checking for open files: %v", err)
		return nil
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	var open []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && (target == dir || strings.HasPrefix(target, dir+string(filepath.Separator))) {
			open = append(open, target)
		}
	}
	return open
}

func TestCloseEndsServe(t *testing.T) {
	cfg := lcConfig(t)
	s := lcStart(t, cfg)
	c := dialReady(t, s.addr, "client.test") // Serve is accepting
	if err := s.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.serveResult(t); !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("Serve after Close = %v, want ErrServerClosed", err)
	}
	// Close drops connections at once, without a goodbye.
	expectClosed(t, c)
	if err := s.srv.Close(); !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("second Close = %v, want ErrServerClosed", err)
	}
	if open := openFilesUnder(t, cfg.DataDir); len(open) > 0 {
		t.Errorf("after Close the server still holds open: %q", open)
	}
}

func TestShutdownIdleSession(t *testing.T) {
	cfg := lcConfig(t)
	s := lcStart(t, cfg)
	c := dialReady(t, s.addr, "client.test")
	done := shutdownAsync(s.srv, t.Context())
	r := expectReply(t, c, 421, "4.3.2")
	if !strings.HasPrefix(r.Lines[0], "mx.test ") {
		t.Errorf("421 reply %q does not name the server", r)
	}
	expectClosed(t, c)
	if err := waitErr(t, "Shutdown", done); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if err := s.serveResult(t); !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v, want ErrServerClosed", err)
	}
	if open := openFilesUnder(t, cfg.DataDir); len(open) > 0 {
		t.Errorf("after Shutdown the server still holds open: %q", open)
	}
	// The listener is closed: a new client is refused outright.
	if conn, err := net.DialTimeout("tcp", s.addr, lcWait); err == nil {
		conn.SetReadDeadline(time.Now().Add(lcWait))
		n, rerr := conn.Read(make([]byte, 64))
		conn.Close()
		if n > 0 {
			t.Errorf("a client connecting after Shutdown was served (read %d bytes, %v)", n, rerr)
		}
	}
}

func TestShutdownLetsTransactionFinish(t *testing.T) {
	cfg := lcConfig(t)
	s := lcStart(t, cfg)
	idle := dialReady(t, s.addr, "idle.test")
	// busy is inside DATA, half its message sent; open has a transaction
	// open (MAIL and RCPT done) but has not sent DATA yet.
	busy := dialReady(t, s.addr, "busy.test")
	startData(t, busy, "alice@example.org")
	first, rest := lcMessage[:40], lcMessage[40:]
	if err := busy.SendRaw(first); err != nil {
		t.Fatal(err)
	}
	open := dialReady(t, s.addr, "open.test")
	if _, err := open.Mail("bob@example.net"); err != nil {
		t.Fatal(err)
	}
	if _, err := open.Rcpt("carol@example.org"); err != nil {
		t.Fatal(err)
	}

	done := shutdownAsync(s.srv, t.Context())
	// The idle session's goodbye proves that shutdown has begun.
	expectReply(t, idle, 421, "4.3.2")
	expectClosed(t, idle)

	// The transaction in flight still completes and is stored, then the
	// session says goodbye too.
	if err := busy.SendRaw(append(bytes.Clone(rest), ".\r\n"...)); err != nil {
		t.Fatal(err)
	}
	expectReply(t, busy, 250, "2.0.0")
	expectReply(t, busy, 421, "4.3.2")
	expectClosed(t, busy)
	if r, err := open.Data(lcMessage); err != nil {
		t.Errorf("a transaction opened before Shutdown could not finish: %v %v", r, err)
	} else {
		expectReply(t, open, 421, "4.3.2")
		expectClosed(t, open)
	}

	if err := waitErr(t, "Shutdown", done); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if err := s.serveResult(t); !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	for _, box := range []string{"alice", "carol"} {
		files := mailboxFiles(t, filepath.Join(cfg.DataDir, "Maildir"), box)
		if len(files) != 1 {
			t.Errorf("%s/new holds %d messages, want 1", box, len(files))
			continue
		}
		if _, _, got := splitTraceFields(t, files[0]); !bytes.Equal(got, storedForm(lcMessage)) {
			t.Errorf("%s: stored message\n got: %q\nwant: %q", box, got, storedForm(lcMessage))
		}
	}
}

func TestShutdownDeadline(t *testing.T) {
	cfg := lcConfig(t)
	s := lcStart(t, cfg)
	stuck := dialReady(t, s.addr, "stuck.test")
	startData(t, stuck, "alice@example.org")
	if err := stuck.SendRaw(lcMessage[:40]); err != nil {
		t.Fatal(err)
	}
	// The client never finishes its message: Shutdown must give up when
	// its context does. The short timeout is what is tested, not a wait
	// for something to happen.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := waitErr(t, "Shutdown", shutdownAsync(s.srv, ctx)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if err := s.srv.Close(); err != nil {
		t.Fatalf("Close after an expired Shutdown = %v, want nil", err)
	}
	expectClosed(t, stuck)
	if err := s.serveResult(t); !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	// Close has waited for the session: its half message is gone from
	// tmp/ and never reached new/.
	if files := mailboxFiles(t, filepath.Join(cfg.DataDir, "Maildir"), "alice"); len(files) != 0 {
		t.Errorf("alice/new holds %d messages, want none", len(files))
	}
	if open := openFilesUnder(t, cfg.DataDir); len(open) > 0 {
		t.Errorf("after Close the server still holds open: %q", open)
	}
}

// lockedBuffer is an io.Writer that several goroutines may write to.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestTwoServersDoNotInterfere(t *testing.T) {
	type server struct {
		name, domain string
		cfg          smtpd.Config
		trace        *lockedBuffer
		s            *lcServer
	}
	servers := []*server{
		{name: "alpha.test", domain: "alpha.example"},
		{name: "beta.test", domain: "beta.example"},
	}
	for _, sv := range servers {
		sv.trace = new(lockedBuffer)
		sv.cfg = lcConfig(t)
		sv.cfg.Hostname = sv.name
		sv.cfg.Domains = []string{sv.domain}
		sv.cfg.MaxRecipients = 1 + len(sv.name) // differs between the two
		sv.cfg.Trace = sv.trace
		sv.cfg.TraceColor = smtpd.ColorNever
		sv.cfg.Verbose = true
		sv.s = lcStart(t, sv.cfg)
	}
	for i, sv := range servers {
		other := servers[1-i]
		c, greeting := dialGreeted(t, sv.s.addr)
		if want := "220 " + sv.name + " ESMTP smtpd"; greeting.String() != want {
			t.Errorf("greeting %q, want %q", greeting, want)
		}
		if _, err := c.Hello("client-of-" + sv.name); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Mail("bob@example.net"); err != nil {
			t.Fatal(err)
		}
		// Each server serves its own domain only.
		if r, _ := c.Cmd("RCPT TO:<alice@" + other.domain + ">"); r == nil || r.Code != 550 {
			t.Errorf("%s: RCPT for %s got %v, want 550", sv.name, other.domain, r)
		}
		if _, err := c.Rcpt("alice@" + sv.domain); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Data(lcMessage); err != nil {
			t.Fatal(err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}
	for i, sv := range servers {
		other := servers[1-i]
		files := mailboxFiles(t, filepath.Join(sv.cfg.DataDir, "Maildir"), "alice")
		if len(files) != 1 {
			t.Fatalf("%s: alice/new holds %d messages, want 1", sv.name, len(files))
		}
		_, received, _ := splitTraceFields(t, files[0])
		if !strings.Contains(received, "\tby "+sv.name+" (smtpd)") || !strings.Contains(received, "client-of-"+sv.name) {
			t.Errorf("%s: Received field %q names the wrong server or client", sv.name, received)
		}
		trace := sv.trace.String()
		if !strings.Contains(trace, "client-of-"+sv.name) || strings.Contains(trace, "client-of-"+other.name) {
			t.Errorf("%s: trace does not hold exactly its own sessions:\n%s", sv.name, trace)
		}
	}
	// Shutting one down leaves the other serving.
	if err := servers[0].s.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	sendOne(t, servers[1].s.addr, "carol@beta.example", lcMessage)
	if n := len(mailboxFiles(t, filepath.Join(servers[1].cfg.DataDir, "Maildir"), "carol")); n != 1 {
		t.Errorf("beta: carol/new holds %d messages after alpha's shutdown, want 1", n)
	}
}

func TestZeroValueServer(t *testing.T) {
	dir := t.TempDir()
	srv := &smtpd.Server{Config: smtpd.Config{DataDir: dir}}
	if srv.Addr() != nil {
		t.Errorf("Addr() = %v before Serve, want nil", srv.Addr())
	}
	s := lcServe(t, srv)
	_, greeting := dialGreeted(t, s.addr)
	if host, err := os.Hostname(); err == nil && !strings.HasPrefix(greeting.String(), "220 "+host+" ") {
		t.Errorf("greeting %q does not name the host %q", greeting, host)
	}
	if got := srv.Addr(); got == nil || got.String() != s.addr {
		t.Errorf("Addr() = %v, want %s", got, s.addr)
	}
	sendOne(t, s.addr, "alice@example.org", lcMessage)
	if n := len(mailboxFiles(t, filepath.Join(dir, "Maildir"), "alice")); n != 1 {
		t.Errorf("%s/Maildir/alice/new holds %d messages, want 1", dir, n)
	}
	if _, err := os.Stat(filepath.Join(dir, "access.log")); err != nil {
		t.Errorf("access log: %v", err)
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := s.serveResult(t); !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*smtpd.Config)
		want string // in the error
	}{
		{"negative MaxMessageBytes", func(c *smtpd.Config) { c.MaxMessageBytes = -1 }, "MaxMessageBytes"},
		{"negative MaxRecipients", func(c *smtpd.Config) { c.MaxRecipients = -1 }, "MaxRecipients"},
		{"negative MaxConns", func(c *smtpd.Config) { c.MaxConns = -1 }, "MaxConns"},
		{"negative MaxErrors", func(c *smtpd.Config) { c.MaxErrors = -1 }, "MaxErrors"},
		{"negative CommandTimeout", func(c *smtpd.Config) { c.CommandTimeout = -time.Second }, "CommandTimeout"},
		{"negative DataTimeout", func(c *smtpd.Config) { c.DataTimeout = -time.Second }, "DataTimeout"},
		{"hostname with a space", func(c *smtpd.Config) { c.Hostname = "mx test" }, "Hostname"},
		{"hostname with CRLF", func(c *smtpd.Config) { c.Hostname = "mx.test\r\n250 injected" }, "Hostname"},
		{"hostname with NUL", func(c *smtpd.Config) { c.Hostname = "mx\x00.test" }, "Hostname"},
		// RFC 5321 §4.1.1.1 and §4.2: the greeting and the EHLO reply
		// name the server with a Domain or an address literal.
		{"hostname with empty label", func(c *smtpd.Config) { c.Hostname = "mx..test" }, "Hostname"},
		{"hostname with a port", func(c *smtpd.Config) { c.Hostname = "mx.test:25" }, "Hostname"},
		{"hostname with a slash", func(c *smtpd.Config) { c.Hostname = "mx/test" }, "Hostname"},
		{"domain with a space", func(c *smtpd.Config) { c.Domains = []string{"example.org", "bad domain"} }, "Domains"},
		{"domain with empty label", func(c *smtpd.Config) { c.Domains = []string{"example..org"} }, "Domains"},
		{"domain starting with a hyphen", func(c *smtpd.Config) { c.Domains = []string{"-example.org"} }, "Domains"},
		{"empty domain", func(c *smtpd.Config) { c.Domains = []string{""} }, "Domains"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := lcConfig(t)
			cfg.DataDir = filepath.Join(cfg.DataDir, "data")
			tc.edit(&cfg)
			srv, err := smtpd.NewServer(cfg)
			if err == nil {
				srv.Close()
				t.Fatalf("NewServer accepted the config (Hostname %q, Domains %q)", cfg.Hostname, cfg.Domains)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
			if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused config created the data directory (%v)", err)
			}
			// A zero-value Server checks the same on Serve.
			zero := &smtpd.Server{Config: cfg}
			l := lcListen(t)
			if err := zero.Serve(l); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Serve of a zero-value Server = %v, want an error naming %s", err, tc.want)
			}
			if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Serve did not close the listener (Accept: %v)", err)
			}
		})
	}
	// Good values of the same fields are accepted.
	cfg := lcConfig(t)
	cfg.Hostname = "[127.0.0.1]"
	cfg.Domains = []string{"Example.ORG.", "[192.0.2.1]", "xn--bcher-kva.example"}
	srv, err := smtpd.NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer refused a good config: %v", err)
	}
	srv.Close()
}

func TestAddr(t *testing.T) {
	srv, err := smtpd.NewServer(lcConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != nil {
		t.Errorf("Addr() = %v before Serve, want nil", srv.Addr())
	}
	s := lcServe(t, srv)
	// A greeting proves that Serve is accepting.
	dialGreeted(t, s.addr)
	if got := srv.Addr(); got == nil || got.String() != s.addr {
		t.Errorf("Addr() = %v, want the listener's address %s", got, s.addr)
	}
}

func TestMaxConns(t *testing.T) {
	cfg := lcConfig(t)
	cfg.MaxConns = 1
	s := lcStart(t, cfg)
	first := dialReady(t, s.addr, "first.test")

	extra, err := client.Dial(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.Timeout = lcWait
	r := expectReply(t, extra, 421, "4.3.2")
	if !strings.HasPrefix(r.Lines[0], "mx.test ") {
		t.Errorf("421 reply %q does not name the server", r)
	}
	expectClosed(t, extra)

	// The session within the limit is unaffected.
	if r, err := first.Cmd("NOOP"); err != nil || r.Code != 250 {
		t.Errorf("NOOP on the first session: %v %v", r, err)
	}
}

func TestDeliveredBeforeReply(t *testing.T) {
	cfg := lcConfig(t)
	var (
		mu        sync.Mutex
		delivered []*smtpd.Message
		problems  []string
	)
	cfg.Delivered = func(m *smtpd.Message) {
		// The message is on disk, in new/, when Delivered runs.
		var missing []string
		for _, p := range m.Paths {
			if _, err := os.Stat(p); err != nil || filepath.Base(filepath.Dir(p)) != "new" {
				missing = append(missing, p)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		delivered = append(delivered, m)
		if len(missing) > 0 || len(m.Paths) == 0 {
			problems = append(problems, "Delivered called before the message was in new/: "+strings.Join(missing, ", "))
		}
	}
	s := lcStart(t, cfg)
	c := dialReady(t, s.addr, "client.test")
	for i := range 3 {
		if _, err := c.Mail("bob@example.net"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Rcpt("alice@example.org"); err != nil {
			t.Fatal(err)
		}
		r, err := c.Data(lcMessage)
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimPrefix(r.Lines[0], "Ok: queued as ")
		mu.Lock()
		n := len(delivered)
		var last *smtpd.Message
		if n > 0 {
			last = delivered[n-1]
		}
		mu.Unlock()
		if n != i+1 || last.ID != id {
			t.Fatalf("after reply %q: Delivered has been called %d times (last %v), want %d, the last for %s", r, n, last, i+1, id)
		}
		if !bytes.Equal(last.Data, lcMessage) {
			t.Errorf("Message.Data = %q, want the wire form %q", last.Data, lcMessage)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
}

// recordingHandler is a slog.Handler that keeps every record.
type recordingHandler struct {
	mu      *sync.Mutex
	records *[]slog.Record
	attrs   []slog.Attr
}

func newRecordingHandler() *recordingHandler {
	return &recordingHandler{mu: new(sync.Mutex), records: new([]slog.Record)}
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.records = append(*h.records, r)
	return nil
}

func (h *recordingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(slices.Clip(h.attrs), attrs...)
	return &h2
}

func (h *recordingHandler) WithGroup(string) slog.Handler { return h }

func (h *recordingHandler) all() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.records)
}

func TestNormalSessionLogsNoError(t *testing.T) {
	h := newRecordingHandler()
	cfg := lcConfig(t)
	cfg.Logger = slog.New(h)
	s := lcStart(t, cfg)

	// A complete session, with the mistakes clients make every day: none
	// of it is an operational error.
	c := dialReady(t, s.addr, "client.test")
	for _, cmd := range []string{"NOOP", "HELP", "VRFY alice", "RSET", "BOGUS", "RCPT TO:<x@example.org>"} {
		if _, err := c.Cmd(cmd); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	if _, err := c.Mail("bob@example.net"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rcpt("alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Data(lcMessage); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	// A client that hangs up without QUIT, and one left for Shutdown.
	dialReady(t, s.addr, "rude.test").Close()
	idle := dialReady(t, s.addr, "idle.test")
	done := shutdownAsync(s.srv, t.Context())
	expectReply(t, idle, 421, "4.3.2")
	if err := waitErr(t, "Shutdown", done); err != nil {
		t.Fatal(err)
	}
	for _, r := range h.all() {
		t.Logf("logged: %s %s", r.Level, r.Message)
		if r.Level >= slog.LevelError {
			t.Errorf("logged at level %s during normal operation: %q", r.Level, r.Message)
		}
	}
}
