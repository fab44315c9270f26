// Package smtpdtest starts real SMTP servers for tests, in the style of
// net/http/httptest: one line gives a test a server on a free loopback port,
// with a temporary data directory, that is closed when the test ends and
// that lets the test read, or wait for, the messages it received.
//
//	func TestSignup(t *testing.T) {
//		srv := smtpdtest.NewServer(t)
//		app := NewApp(srv.Addr) // the code under test sends mail here
//		app.Signup("alice@example.org")
//		m, err := srv.WaitFor(t.Context(), smtpdtest.To("alice@example.org"))
//		if err != nil {
//			t.Fatal(err) // says which messages did arrive
//		}
//		if got := m.Header().Get("Subject"); got != "Welcome" {
//			t.Errorf("Subject = %q", got)
//		}
//	}
//
// The server is the real one, with its real replies, Maildir delivery and
// smuggling-safe DATA reader; options add what a test needs on top (a trace
// in the test's output, fault plans, any AUTH accepted). It stores without
// flushing to disk (smtpd.Config.NoSync), which a test does not need and
// which made a whole test about twice as slow; Durable turns flushing back
// on.
package smtpdtest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tpe-protos/smtpd"
)

// Server is a running SMTP server for one test.
type Server struct {
	// Addr is the server's host:port on the loopback interface.
	Addr string
	// TLSAddr is the host:port of its implicit TLS listener (RFC 8314),
	// when the Config has a TLSConfig; "" otherwise.
	TLSAddr string
	// DataDir is the server's data directory, a t.TempDir() unless the
	// Config named one.
	DataDir string
	// MaildirRoot is the root of the Maildir tree: mailbox "alice" is
	// MaildirRoot/alice.
	MaildirRoot string
	// SMTP is the server itself.
	SMTP *smtpd.Server

	served  chan error // Serve's (and ServeTLS's) result
	serving int        // how many results to wait for

	mu      sync.Mutex
	msgs    []*smtpd.Message
	arrival chan struct{} // closed at the next arrival, then replaced
}

// An Option changes how NewServer sets a server up.
type Option func(*options)

type options struct {
	cfg      smtpd.Config
	trace    bool
	faults   *smtpd.FaultPlan
	testMode bool
	durable  bool
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

// AnyAuth puts the server in smtpd.Config.TestMode: AUTH is offered
// without TLS and accepts any credentials, which each Message records
// (AuthUser, AuthPassword), and unknown MAIL and RCPT parameters are
// ignored.
func AnyAuth() Option {
	return func(o *options) { o.testMode = true }
}

// NewServer starts a server on 127.0.0.1 and a free port and closes it when
// the test ends. Unset Config fields get test-friendly values: the hostname
// "smtpd.test", a t.TempDir() data directory, and logs written to the
// test's output; messages are not flushed to disk unless Durable is given. The server keeps every message it stores (with its data)
// for Messages, WaitMessages and WaitFor; a Delivered function in the
// Config is still called. With a Config.TLSConfig it also serves implicit
// TLS on TLSAddr. NewServer fails the test if the server cannot start.
func NewServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
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
	ts := &Server{arrival: make(chan struct{}), served: make(chan error, 2), DataDir: cfg.DataDir, MaildirRoot: cfg.MaildirRoot}
	if ts.MaildirRoot == "" {
		ts.MaildirRoot = filepath.Join(cfg.DataDir, "Maildir")
	}
	userDelivered := cfg.Delivered
	cfg.Delivered = func(m *smtpd.Message) {
		ts.record(m)
		if userDelivered != nil {
			userDelivered(m)
		}
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

// Close closes the server and every connection at once and waits until it
// has stopped. It may be called more than once.
func (ts *Server) Close() {
	if ts.SMTP.Close() == nil {
		for range ts.serving {
			<-ts.served
		}
	}
}

func (ts *Server) record(m *smtpd.Message) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.msgs = append(ts.msgs, m)
	close(ts.arrival)
	ts.arrival = make(chan struct{})
}

// Messages returns the messages stored since the server started (or since
// Reset), in the order they were accepted.
func (ts *Server) Messages() []*smtpd.Message {
	msgs, _ := ts.snapshot()
	return msgs
}

func (ts *Server) snapshot() ([]*smtpd.Message, <-chan struct{}) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]*smtpd.Message(nil), ts.msgs...), ts.arrival
}

// Reset forgets the messages received so far, so that subtests sharing a
// server each wait for their own. What is on disk stays.
func (ts *Server) Reset() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.msgs = nil
}

// WaitMessages waits until at least n messages have been stored and returns
// them all. If ctx ends first, it returns those that arrived and an error
// that lists them. It wakes on each arrival; it does not poll.
func (ts *Server) WaitMessages(ctx context.Context, n int) ([]*smtpd.Message, error) {
	for {
		msgs, arrival := ts.snapshot()
		if len(msgs) >= n {
			return msgs, nil
		}
		select {
		case <-arrival:
		case <-ctx.Done():
			return msgs, fmt.Errorf("smtpdtest: %d of %d messages arrived (%w)%s", len(msgs), n, context.Cause(ctx), describe(msgs))
		}
	}
}

// WaitFor waits until a stored message satisfies match (one that came
// before the call counts too) and returns the first that does. If ctx ends
// first, the error lists the messages that did arrive.
func (ts *Server) WaitFor(ctx context.Context, match func(*smtpd.Message) bool) (*smtpd.Message, error) {
	for {
		msgs, arrival := ts.snapshot()
		for _, m := range msgs {
			if match(m) {
				return m, nil
			}
		}
		select {
		case <-arrival:
		case <-ctx.Done():
			return nil, fmt.Errorf("smtpdtest: no matching message among the %d that arrived (%w)%s", len(msgs), context.Cause(ctx), describe(msgs))
		}
	}
}

// describe lists messages for an error: who sent each, to whom, its subject.
func describe(msgs []*smtpd.Message) string {
	var b strings.Builder
	for i, m := range msgs {
		fmt.Fprintf(&b, "\n\t%d. from <%s> to <%s> subject %q", i+1, m.From, strings.Join(m.To, ">, <"), m.Header().Get("Subject"))
	}
	return b.String()
}

// To matches a message with the recipient addr among its envelope
// recipients (compared without regard to case).
func To(addr string) func(*smtpd.Message) bool {
	return func(m *smtpd.Message) bool {
		for _, to := range m.To {
			if strings.EqualFold(to, addr) {
				return true
			}
		}
		return false
	}
}

// From matches a message with the envelope sender addr.
func From(addr string) func(*smtpd.Message) bool {
	return func(m *smtpd.Message) bool { return strings.EqualFold(m.From, addr) }
}

// Subject matches a message whose Subject header field contains s.
func Subject(s string) func(*smtpd.Message) bool {
	return func(m *smtpd.Message) bool { return strings.Contains(m.Header().Get("Subject"), s) }
}
