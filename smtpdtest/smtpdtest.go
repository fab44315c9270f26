// Package smtpdtest starts real SMTP servers for tests, in the style of
// net/http/httptest: one line gives a test a server on a free loopback port,
// with a temporary data directory, that is closed when the test ends and
// that lets the test read, or wait for, the messages it received.
//
//	func TestSignup(t *testing.T) {
//		srv := smtpdtest.NewServer(t, smtpd.Config{})
//		app := NewApp(srv.Addr) // the code under test sends mail here
//		app.Signup("alice@example.org")
//		msgs, err := srv.WaitMessages(t.Context(), 1)
//		...
//	}
package smtpdtest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
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
	// MaildirRoot is the root of the Maildir tree.
	MaildirRoot string
	// SMTP is the server itself.
	SMTP *smtpd.Server

	served  chan error // Serve's (and ServeTLS's) result
	serving int        // how many results to wait for

	mu      sync.Mutex
	msgs    []*smtpd.Message
	arrival chan struct{} // closed at the next arrival, then replaced
}

// NewServer starts a server with cfg on 127.0.0.1 and a free port and
// closes it when the test ends. Unset fields get test-friendly values: the
// hostname "smtpd.test", a t.TempDir() data directory, and logs written to
// the test's output. The server keeps every message it stores (with its
// data) for Messages and WaitMessages; a Delivered function in cfg is still
// called. With a Config.TLSConfig it also serves implicit TLS on TLSAddr.
// NewServer fails the test if the server cannot start.
func NewServer(tb testing.TB, cfg smtpd.Config) *Server {
	tb.Helper()
	ts := &Server{arrival: make(chan struct{}), served: make(chan error, 2)}
	if cfg.Hostname == "" {
		cfg.Hostname = "smtpd.test"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(tb.Output(), nil))
	}
	ts.DataDir = cfg.DataDir
	ts.MaildirRoot = cfg.MaildirRoot
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

// Messages returns the messages stored so far, in the order they were
// accepted.
func (ts *Server) Messages() []*smtpd.Message {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]*smtpd.Message(nil), ts.msgs...)
}

// WaitMessages waits until at least n messages have been stored and returns
// them all. If ctx ends first, it returns those that arrived and an error
// saying how many did. It wakes on each arrival; it does not poll.
func (ts *Server) WaitMessages(ctx context.Context, n int) ([]*smtpd.Message, error) {
	for {
		ts.mu.Lock()
		msgs := append([]*smtpd.Message(nil), ts.msgs...)
		arrival := ts.arrival
		ts.mu.Unlock()
		if len(msgs) >= n {
			return msgs, nil
		}
		select {
		case <-arrival:
		case <-ctx.Done():
			return msgs, fmt.Errorf("smtpdtest: %d of %d messages arrived: %w", len(msgs), n, context.Cause(ctx))
		}
	}
}
