// Package smtpdtest starts real SMTP servers for tests, in the style of
// net/http/httptest: one line gives a test a server on a free loopback port,
// with a temporary data directory, that is closed when the test ends and
// that lets the test read, or wait for, the messages it received and the
// sessions clients had with it.
//
//	func TestSignup(t *testing.T) {
//		srv := smtpdtest.NewServer(t)
//		app := NewApp(srv.Addr) // the code under test sends mail here
//		app.Signup("alice@example.org")
//		m, err := srv.WaitFor(t.Context(), smtpdtest.To("alice@example.org"))
//		if err != nil {
//			t.Fatal(err) // says what it waited for, and which messages did arrive
//		}
//		if got := m.DecodedHeader("Subject"); got != "Welcome" {
//			t.Errorf("Subject = %q", got)
//		}
//		if !strings.Contains(m.Text(), "/confirm?token=") {
//			t.Errorf("no confirmation link in %q", m.Text())
//		}
//	}
//
// Every wait ends: at the context's deadline, or, when the context has
// none (t.Context() has none), after 10 seconds (see WaitTimeout), and
// always before the test's own deadline (go test -timeout), so that a
// failed wait says what arrived instead of ending in a timeout panic.
//
// The server is the real one, with its real replies, Maildir delivery and
// smuggling-safe DATA reader; options add what a test needs on top: a trace
// in the test's output, fault plans, test mode (any AUTH accepted), TLS
// with a certificate of its own. It stores without flushing to disk
// (smtpd.Config.NoSync), which a test does not need and which made a whole
// test about twice as slow; Durable turns flushing back on.
package smtpdtest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/internal/selfsigned"
)

// Server is a running SMTP server for one test.
type Server struct {
	// Addr is the server's host:port on the loopback interface.
	Addr string
	// TLSAddr is the host:port of its implicit TLS listener (RFC 8314),
	// when it has TLS (the TLS option, or a Config.TLSConfig); ""
	// otherwise.
	TLSAddr string
	// DataDir is the server's data directory, a t.TempDir() unless the
	// Config named one.
	DataDir string
	// MaildirRoot is the root of the Maildir tree: mailbox "alice" is
	// MaildirRoot/alice.
	MaildirRoot string
	// SMTP is the server itself.
	SMTP *smtpd.Server

	tb          testing.TB
	waitTimeout time.Duration
	clientTLS   *tls.Config // trusts the certificate of the TLS option; nil without it

	served  chan error // Serve's (and ServeTLS's) result
	serving int        // how many results to wait for

	mu       sync.Mutex
	msgs     []*smtpd.Message
	sessions []*smtpd.SessionLog        // the last maxSessions, in the order they started
	live     map[*smtpd.SessionLog]bool // sessions started since Reset that go on
	ended    int                        // sessions started since Reset that have ended
	arrival  chan struct{}              // closed at the next message, or session start or end, then replaced
}

// maxSessions bounds the sessions a Server keeps for Sessions; the oldest
// are forgotten first.
const maxSessions = 1000

// An Option changes how NewServer sets a server up.
type Option func(*options)

type options struct {
	cfg         smtpd.Config
	trace       bool
	faults      *smtpd.FaultPlan
	testMode    bool
	tls         bool
	durable     bool
	waitTimeout time.Duration
}

// Config starts the server with cfg; the other options and NewServer's
// defaults apply on top of it.
func Config(cfg smtpd.Config) Option {
	return func(o *options) { o.cfg = cfg }
}

// Trace writes the session trace, with explanations, to the test's output:
// a failing test then shows the whole dialogue.
func Trace() Option {
	return func(o *options) { o.trace = true }
}

// Faults starts the server with a fault plan (see smtpd.FaultPlan); the
// test can replace it at any time with SMTP.SetFaults.
func Faults(plan *smtpd.FaultPlan) Option {
	return func(o *options) { o.faults = plan }
}

// Durable makes the server flush every message to disk before its 250, as
// smtpd does outside tests, for a test of that very path; without it the
// server runs with smtpd.Config.NoSync.
func Durable() Option {
	return func(o *options) { o.durable = true }
}

// TestMode puts the server in smtpd.Config.TestMode, for code that
// authenticates or sends unusual parameters: AUTH (PLAIN and LOGIN) is
// offered without TLS and accepts any credentials, which each Message
// records (AuthUser, AuthzID, AuthPassword), and MAIL and RCPT parameters
// the server does not know are ignored instead of refused.
func TestMode() Option {
	return func(o *options) { o.testMode = true }
}

// TLS gives the server a certificate of its own, made for the test and
// trusted by Server.ClientTLSConfig: the server then offers STARTTLS and
// also serves implicit TLS on TLSAddr. The certificate names the server's
// hostname ("smtpd.test" unless the Config says otherwise), localhost,
// 127.0.0.1 and ::1.
//
// Clients upgrade to TLS when STARTTLS is offered, net/smtp.SendMail
// among them, and then check the certificate against the system's
// authorities, which do not know this one: SendMail fails with "x509:
// certificate signed by unknown authority". Code under test must take a
// *tls.Config for that (see the example). The option cannot be combined
// with a Config.TLSConfig.
func TLS() Option {
	return func(o *options) { o.tls = true }
}

// WaitTimeout sets how long a wait (WaitFor, WaitMessages,
// WaitSessions) lasts when its context has no deadline; 10 seconds by
// default. No wait lasts past the test's deadline (go test -timeout) less
// a second, whatever the context and this timeout say.
func WaitTimeout(d time.Duration) Option {
	return func(o *options) { o.waitTimeout = d }
}

// defaultWaitTimeout is WaitTimeout's default.
const defaultWaitTimeout = 10 * time.Second

// NewServer starts a server on 127.0.0.1 and a free port and closes it when
// the test ends. Unset Config fields get test-friendly values: the hostname
// "smtpd.test", a t.TempDir() data directory, and logs written to the
// test's output; messages are not flushed to disk unless Durable is
// given. The server keeps every message it stores (with its data)
// for Messages, WaitMessages and WaitFor, and the record of the last 1000
// sessions for Sessions; Delivered, SessionStarted and SessionEnded
// functions in the Config are still called. With TLS it also serves
// implicit TLS on TLSAddr. NewServer fails the test if the server cannot
// start.
func NewServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	o := options{waitTimeout: defaultWaitTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	ts := &Server{tb: tb, waitTimeout: o.waitTimeout, arrival: make(chan struct{}), served: make(chan error, 2), live: make(map[*smtpd.SessionLog]bool)}
	cfg, err := ts.config(tb, o)
	if err != nil {
		tb.Fatalf("smtpdtest: %v", err)
	}
	ts.DataDir, ts.MaildirRoot = cfg.DataDir, cfg.MaildirRoot
	if ts.MaildirRoot == "" {
		ts.MaildirRoot = filepath.Join(cfg.DataDir, "Maildir")
	}
	srv, err := smtpd.NewServer(cfg)
	if err != nil {
		tb.Fatalf("smtpdtest: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		tb.Fatalf("smtpdtest: %v", err)
	}
	ts.SMTP, ts.Addr = srv, l.Addr().String()
	ts.serving = 1
	if cfg.TLSConfig != nil {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			l.Close()
			srv.Close()
			tb.Fatalf("smtpdtest: %v", err)
		}
		ts.TLSAddr = tl.Addr().String()
		ts.serving++
		go func() { ts.served <- srv.ServeTLS(tl) }()
	}
	go func() { ts.served <- srv.Serve(l) }()
	tb.Cleanup(ts.Close)
	return ts
}

// config returns the server's Config: the options' on top of the one given,
// test-friendly defaults, and the hooks that record messages and sessions.
func (ts *Server) config(tb testing.TB, o options) (smtpd.Config, error) {
	cfg := o.cfg
	if cfg.Hostname == "" {
		cfg.Hostname = "smtpd.test"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(tb.Output(), nil))
	}
	if o.trace {
		cfg.Trace, cfg.Verbose, cfg.Explain, cfg.TraceColor = tb.Output(), true, true, smtpd.ColorNever
	}
	if o.faults != nil {
		cfg.Faults = o.faults
	}
	cfg.TestMode = cfg.TestMode || o.testMode
	cfg.NoSync = !o.durable
	if o.tls {
		if cfg.TLSConfig != nil {
			return cfg, errTLSTwice
		}
		var err error
		if cfg.TLSConfig, ts.clientTLS, err = ownCertificate(cfg.Hostname); err != nil {
			return cfg, err
		}
	}
	delivered, started, ended := cfg.Delivered, cfg.SessionStarted, cfg.SessionEnded
	cfg.Delivered = func(m *smtpd.Message) {
		ts.record(m)
		if delivered != nil {
			delivered(m)
		}
	}
	cfg.SessionStarted = func(l *smtpd.SessionLog) {
		ts.sessionStarted(l)
		if started != nil {
			started(l)
		}
	}
	cfg.SessionEnded = func(l *smtpd.SessionLog) {
		ts.sessionEnded(l)
		if ended != nil {
			ended(l)
		}
	}
	return cfg, nil
}

var errTLSTwice = errors.New("the TLS option and a Config.TLSConfig exclude each other")

// ownCertificate makes the TLS option's certificate, valid for a day, and
// the server and client configurations that use it.
func ownCertificate(hostname string) (server, client *tls.Config, err error) {
	certPEM, keyPEM, err := selfsigned.New(hostname, time.Now(), 24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &tls.Config{Certificates: []tls.Certificate{cert}},
		&tls.Config{RootCAs: pool, ServerName: selfsigned.Name(hostname)}, nil
}

// ClientTLSConfig returns a TLS configuration for clients of the server:
// it trusts the certificate of the TLS option, and expects the server's
// hostname. Each call returns a new one, which the caller may change. It
// returns nil when the server was not started with the TLS option.
func (ts *Server) ClientTLSConfig() *tls.Config {
	if ts.clientTLS == nil {
		return nil
	}
	return ts.clientTLS.Clone()
}

// Close closes the server and every connection at once and waits until it
// has stopped. It may be called more than once.
func (ts *Server) Close() {
	if ts.SMTP.Close() == nil {
		for range ts.serving {
			<-ts.served
		}
	}
}

// wake wakes the waiters; ts.mu must be held.
func (ts *Server) wake() {
	close(ts.arrival)
	ts.arrival = make(chan struct{})
}

func (ts *Server) record(m *smtpd.Message) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.msgs = append(ts.msgs, m)
	ts.wake()
}

func (ts *Server) sessionStarted(l *smtpd.SessionLog) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.sessions) == maxSessions {
		ts.sessions = append(ts.sessions[:0], ts.sessions[1:]...)
	}
	ts.sessions = append(ts.sessions, l)
	ts.live[l] = true
	ts.wake()
}

func (ts *Server) sessionEnded(l *smtpd.SessionLog) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.live[l] { // else it started before Reset
		delete(ts.live, l)
		ts.ended++
	}
	ts.wake()
}

// Messages returns the messages stored since the server started (or since
// Reset or Take), in the order they were accepted.
func (ts *Server) Messages() []*smtpd.Message {
	msgs, _ := ts.snapshot()
	return msgs
}

func (ts *Server) snapshot() ([]*smtpd.Message, <-chan struct{}) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]*smtpd.Message(nil), ts.msgs...), ts.arrival
}

// Take returns the messages stored since the server started (or since
// Reset or Take) and forgets them, in one step: a message that arrives
// meanwhile is either returned or kept for the next call, never lost.
func (ts *Server) Take() []*smtpd.Message {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	msgs := ts.msgs
	ts.msgs = nil
	return msgs
}

// Reset forgets the messages and the sessions recorded so far, so that
// subtests sharing a server each wait for their own. What is on disk stays.
func (ts *Server) Reset() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.msgs, ts.sessions, ts.ended = nil, nil, 0
	clear(ts.live)
}

// Sessions returns the record of each session since the server started (or
// since Reset), in the order they started: the last 1000 of them. Sessions
// that go on are included with End smtpd.SessionOpen. A client that got a
// reply finds it there, and, if the reply ended the session (QUIT's 221,
// a 421), that the session ended; a session the client just closed may
// still be open for a moment (see WaitSessions).
func (ts *Server) Sessions() []smtpd.SessionRecord {
	logs, _, _ := ts.sessionSnapshot()
	return records(logs)
}

func (ts *Server) sessionSnapshot() ([]*smtpd.SessionLog, int, <-chan struct{}) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]*smtpd.SessionLog(nil), ts.sessions...), ts.ended, ts.arrival
}

func records(logs []*smtpd.SessionLog) []smtpd.SessionRecord {
	recs := make([]smtpd.SessionRecord, len(logs))
	for i, l := range logs {
		recs[i] = l.Record()
	}
	return recs
}
