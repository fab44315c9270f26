package smtpd

import (
	"context"
	"crypto/tls"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config holds the settings of a Server. The zero Config is valid and safe:
// a zero field means the documented default, never "unlimited". Negative
// numbers are refused, but for MaxConnsPerIP's -1 (no limit).
//
// A Server reads its Config once, in NewServer (or, for a Server made
// without it, when it starts serving), and keeps its own copy: changing
// the Config, or the slices it holds, afterwards has no effect. A running
// server is changed only through Server.SetFaults and the management
// protocol.
type Config struct {
	// Addr is the TCP address ListenAndServe listens on; "" means ":2525".
	Addr string
	// Hostname is the server's name in the greeting, the EHLO reply and
	// the Received header; "" means os.Hostname().
	Hostname string
	// DataDir holds the Maildir tree and access.log; "" means
	// "./smtpd-data". It is created if missing.
	DataDir string
	// MaildirRoot is the root of the Maildir tree; "" means
	// DataDir/Maildir. Each recipient mailbox is a Maildir below it.
	MaildirRoot string
	// Domains lists the domains the server accepts mail for (compared
	// without regard to case); other recipients get 550 5.7.1. Empty
	// means every domain.
	Domains []string
	// MaxMessageBytes is the largest message accepted, advertised with
	// EHLO's SIZE (RFC 1870); 0 means 10240000. The management protocol
	// can change it at run time.
	MaxMessageBytes int64
	// MaxRecipients is the most recipients one message may have; 0 means
	// 100.
	MaxRecipients int
	// MaxConns is the most concurrent sessions; a client over the limit
	// gets 421 4.3.2 and is disconnected. 0 means 10000. A session holds
	// at most two open files, its connection and the message it is
	// receiving (however many recipients it has), and eight more while
	// a content filter runs; the Maildir store keeps at most 512
	// directories open besides, and up to 128 connections stay open for
	// a second after their sessions (see SECURITY.md). Keep what that
	// adds up to under the process's open-file limit, with some to spare
	// (the smtpd command lowers its default to fit). Past that limit
	// accept fails, and Serve backs off and retries while new clients
	// wait, unanswered, in the listen queue. An idle session costs the
	// server about 4.5 KiB.
	MaxConns int
	// MaxErrors is how many error replies (5xx) a session may get before
	// the server answers 421 4.7.0 and closes it; 0 means 10.
	MaxErrors int
	// CommandTimeout is how long the server waits for a command (and for
	// the client to take a reply); an idle session then gets 421 4.4.2.
	// 0 means 5 minutes (RFC 5321 §4.5.3.2.7).
	CommandTimeout time.Duration
	// DataTimeout is how long the server waits for each block of message
	// data; 0 means 3 minutes (RFC 5321 §4.5.3.2.6).
	DataTimeout time.Duration
	// Logger receives operational events: start, delivery failures,
	// panics. nil means slog.Default().
	Logger *slog.Logger
	// Trace receives the session trace, one line per protocol line, while
	// the trace is on (Verbose, or switched on at run time). nil disables
	// it.
	Trace io.Writer
	// TraceColor says when the trace is colored.
	TraceColor ColorMode
	// Verbose switches the trace on from the start.
	Verbose bool
	// Explain follows each reply in the trace with a line saying what it
	// means and which RFC section defines it: for lessons.
	Explain bool
	// TraceBody traces message data whole; by default the trace shows
	// its first lines and its size.
	TraceBody bool
	// StrictCRLF refuses lines that end in a bare LF, as chasquid does:
	// a command gets 500 5.5.2, a message 554 5.6.0. By default such
	// lines are taken as lines, and the trace says once per
	// session that SMTP wants CRLF.
	StrictCRLF bool
	// MetricsAddr is the UDP address ListenAndServe also serves the
	// management protocol on (docs/metrics-protocol.md); "" means none. Keep it on a
	// loopback address unless the network is trusted: the protocol is
	// authenticated, not encrypted. It needs MetricsKey.
	MetricsAddr string
	// HTTPAddr is the TCP address ListenAndServe also serves the HTTP
	// view on (Handler: the web page, the JSON API, the event stream and
	// Prometheus /metrics); "" means none. An address without a host
	// (":8025") means the loopback interface, 127.0.0.1: the view has no
	// login. Name the host to listen elsewhere ("0.0.0.0:8025").
	HTTPAddr string
	// MetricsKey is the secret that authenticates management requests
	// and responses (HMAC-SHA256); at least 16 bytes. The management
	// protocol is refused without it.
	MetricsKey []byte
	// StateFile, if set, is where the counters that persist (connections,
	// bytes, messages) are saved, every 10 seconds and at Shutdown and
	// Close, and loaded from at start.
	StateFile string
	// Filter, if set, transforms every message before it is stored (see
	// Filter, CommandFilter and FilterFunc). The management protocol can
	// switch it off and on at run time; it starts on.
	Filter Filter
	// FilterTimeout bounds each run of the Filter; 0 means 30 seconds.
	FilterTimeout time.Duration
	// Faults is the fault plan the server starts with (see FaultPlan;
	// Server.SetFaults replaces it at run time). nil means none.
	Faults *FaultPlan
	// LMTP makes the server speak LMTP (RFC 2033) instead of SMTP, for a
	// mail system that hands it local deliveries, as Postfix does with
	// "mailbox_transport = lmtp:inet:host:port" or "lmtp:unix:path"
	// (serve a Unix socket with Serve(net.Listen("unix", path))). The
	// client greets with LHLO (HELO and EHLO are refused), and after the
	// data of a message every accepted recipient gets a reply of its own,
	// in RCPT order: one mailbox that cannot take the message does not
	// fail the others (RFC 2033 §4.2). LMTP is not for port 25, nor for
	// untrusted networks.
	LMTP bool
	// Delivered, if set, is called with each message once it is stored
	// durably and before the client gets its 250 reply, so a test that
	// saw the reply can rely on the call having happened. The server then
	// keeps each message's data in memory while it is received
	// (Message.Data). It runs on the session's goroutine: a slow function
	// slows that session only.
	Delivered func(*Message)
	// SessionStarted and SessionEnded, if either is set, make the server
	// keep a SessionLog of every session: the client's address, each
	// command with its reply, the messages delivered, how the session
	// ended. SessionStarted is called with the log once the client's
	// address is known (after a PROXY header, and the TLS handshake on the
	// implicit TLS port), before the server's first reply; the log then
	// grows as the session goes on. SessionEnded is called with the
	// complete log when the session has ended; Close, and a Shutdown
	// that completes, return only after these calls. Both run on the
	// session's goroutine. A
	// connection turned away over MaxConns, before any session starts, has
	// no log. A log holds the session's transcript and the first 1000
	// messages it delivered (see SECURITY.md).
	SessionStarted func(*SessionLog)
	// SessionEnded: see SessionStarted.
	SessionEnded func(*SessionLog)
	// NoSync stores messages without flushing them to disk. A message
	// still appears in new/ whole and at once, and a 250 still means it
	// is there, in the kernel's hands: a crash of the server loses
	// nothing, but a crash of the machine (power loss, kernel panic) may
	// lose the messages of its last seconds. By default a 250 means the
	// message and its directory entry are on stable storage. NoSync is
	// for tests, demos and local sinks, which mailpit and go-smtp-mock
	// serve the same way; smtpdtest sets it unless told otherwise.
	NoSync bool

	// TLSConfig, if set, turns on STARTTLS (RFC 3207) and lets ServeTLS
	// serve implicit TLS (RFC 8314). It needs a certificate (Certificates,
	// GetCertificate or GetConfigForClient). The server uses a clone: its
	// MinVersion is raised to TLS 1.2 if lower, and session tickets are
	// disabled unless TLSSessionTickets is set (see there). nil means no
	// TLS: EHLO does not offer STARTTLS and STARTTLS gets 502.
	TLSConfig *tls.Config
	// TLSSessionTickets keeps TLS session tickets on. They are off by
	// default because resuming a ticketed session broke STARTTLS for some
	// Outlook versions (as chasquid and mox found); a *tls.Config cannot
	// say whether its SessionTicketsDisabled=false was chosen or is just
	// the zero value, hence this separate switch.
	TLSSessionTickets bool
	// TLSAddr is the address ListenAndServe also serves implicit TLS on
	// (RFC 8314, conventionally port 465); "" means none. It needs
	// TLSConfig.
	TLSAddr string

	// Authenticate, if set, turns on SMTP AUTH (RFC 4954) with the PLAIN
	// and LOGIN mechanisms: it is called with the user name and password
	// a client gave and returns nil to accept them. For bad credentials it
	// must return ErrAuthFailed (or an error wrapping it): the client then
	// gets 535 5.7.8 after AuthFailureDelay. Any other error is taken as a
	// temporary failure of the user database (454 4.7.0, logged). ctx ends
	// when the server closes or the command times out. It runs on the
	// session's goroutine. Users.Authenticate fits; so does any function
	// checking a database. The password must never be logged.
	Authenticate func(ctx context.Context, user, password string) error
	// TestMode makes the server easy on clients under test: AUTH (PLAIN
	// and LOGIN) is offered on every connection, TLS or not, and accepts
	// any credentials unless Authenticate is set, and the credentials are
	// recorded in Message.AuthUser and Message.AuthPassword; MAIL and RCPT
	// parameters the server does not know are ignored instead of refused
	// (real providers' clients send extra ones). Never use it for a server
	// that others can reach.
	TestMode bool
	// AllowInsecureAuth offers and accepts AUTH on connections without
	// TLS. By default AUTH is only offered after STARTTLS or on the
	// implicit TLS port, and is refused before with 538 5.7.11
	// (RFC 4954 §4): a password sent in clear is a password given away.
	AllowInsecureAuth bool
	// RequireAuth refuses MAIL from clients that have not authenticated
	// with 530 5.7.0 (RFC 4954 §6). It needs Authenticate.
	RequireAuth bool
	// AuthFailureDelay is how long the server waits before it answers
	// 535 to bad credentials, which slows down password guessing; 0 means
	// 1 second.
	AuthFailureDelay time.Duration
	// MaxAuthFailures is how many failed AUTH attempts a session may make;
	// the last one is answered 421 4.7.0 and the session closed. 0 means 3.
	MaxAuthFailures int
	// MaxAuthChecks is the most calls of Authenticate running at once;
	// an AUTH over it waits its turn, up to CommandTimeout, and then gets
	// 454 4.7.0. A bcrypt check keeps a core busy for tens of
	// milliseconds, so without a bound many sessions guessing passwords
	// take every core (Dovecot likewise checks passwords in a fixed
	// number of workers). Turns go first to the client addresses with the
	// fewest checks running, so a real user does not queue behind the
	// guesses of another address. 0 means runtime.GOMAXPROCS at start;
	// raise it for an Authenticate that mostly waits, on a remote
	// database for instance.
	MaxAuthChecks int

	// MaxConnsPerIP is the most concurrent sessions from one client IP
	// address (the real client's, behind a trusted proxy); a client over
	// it gets 421 4.7.0 and is disconnected. 0 means 100 for remote
	// clients and no limit for loopback ones: the machine's own tests,
	// load generators and tools (Postfix likewise exempts $mynetworks). A
	// value set here applies to every client, loopback ones too. -1 means
	// no limit at all: for a classroom whose students each open hundreds
	// of connections from their own machines, or clients that all come
	// through one NAT address.
	MaxConnsPerIP int
	// SessionTimeout bounds a whole session, however busy: once it has
	// passed, the next read ends the session with 421 4.4.2. It is what
	// stops a client that trickles message data just fast enough to beat
	// DataTimeout. 0 means 30 minutes.
	SessionTimeout time.Duration
	// GreetDelay, if set, turns on the early talker check: the server
	// waits that long, silent, before its greeting, and a client that
	// sends anything meanwhile (RFC 5321 §4.3.1: the client waits for the
	// greeting) gets 554 5.5.0 and is disconnected, as Sendmail's
	// greet_pause and Postfix's postscreen pregreet test do. Spam software
	// that does not wait is caught with a second or more (postscreen waits
	// 6 s), at the price of that much latency for every client. 0, the
	// default, means no wait and no check: a client that talks first, as
	// "cat mail.txt | nc" does, is served, its commands taken as one
	// pipelined batch.
	GreetDelay time.Duration
	// ProxyFrom lists the networks of trusted proxies (HAProxy, a load
	// balancer) that begin each connection with a PROXY protocol header,
	// version 1 or 2. A connection from these addresses must start with
	// one; the client address it gives is then the session's remote
	// address everywhere: trace, logs, per-IP limit, Received header,
	// access log, Message.RemoteAddr. From any other address the header
	// is not looked for ("PROXY" is then an unknown command). Empty means
	// no trusted proxy.
	ProxyFrom []netip.Prefix
}

// settings are a Config's values with the defaults applied. The Config the
// user gave is never written to.
type settings struct {
	hostname       string
	dataDir        string
	maildirRoot    string
	domains        map[string]bool
	maxRecipients  int
	maxConns       int
	maxErrors      int
	commandTimeout time.Duration
	dataTimeout    time.Duration
	filterTimeout  time.Duration

	tlsConfig        *tls.Config // the clone in use; nil without TLS
	authFailureDelay time.Duration
	maxAuthFailures  int
	maxConnsPerIP    int  // 0: no limit
	limitLoopback    bool // MaxConnsPerIP was set: loopback clients count too
	sessionTimeout   time.Duration
	greetDelay       time.Duration
	lmtp             bool // speak LMTP (RFC 2033)
	maxAuthChecks    int

	// The rest of Config, copied so that a running server never reads
	// Config again.
	addr, tlsAddr, metricsAddr string
	httpAddr                   string
	strictCRLF                 bool
	testMode                   bool
	authenticate               func(ctx context.Context, user, password string) error
	allowInsecureAuth          bool
	requireAuth                bool
	proxyFrom                  []netip.Prefix
	delivered                  func(*Message)
	sessionStarted             func(*SessionLog)
	sessionEnded               func(*SessionLog)
	filter                     Filter
	metricsKey                 []byte
	stateFile                  string
}

// Defaults, as the README's Command line section lists them, and from
// RFC 5321 §4.5.3.
const (
	DefaultAddr            = ":2525"
	DefaultDataDir         = "smtpd-data"
	DefaultMaxMessageBytes = 10240000
	DefaultMaxRecipients   = 100
	DefaultMaxConns        = 10000
	DefaultMaxErrors       = 10
	DefaultCommandTimeout  = 5 * time.Minute
	DefaultDataTimeout     = 3 * time.Minute
	DefaultFilterTimeout   = 30 * time.Second

	DefaultAuthFailureDelay = time.Second
	DefaultMaxAuthFailures  = 3
	DefaultMaxConnsPerIP    = 100
	DefaultSessionTimeout   = 30 * time.Minute
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown or
// Close, and by a second Close.
var ErrServerClosed = errors.New("smtpd: Server closed")

// Server is an SMTP server that stores what it accepts in Maildirs.
// Create one with NewServer, or use &Server{Config: c}, whose Config is
// checked when it starts serving. Either way Config is read then, once:
// later changes to it have no effect. A Server must not be copied once
// used, nor reused after Shutdown or Close.
type Server struct {
	Config Config

	initOnce sync.Once
	initErr  error
	set      settings
	ctx      context.Context // ends at Close: stops what runs on the server's behalf (filters)
	cancel   context.CancelFunc
	store    *maildir
	access   *accessLog
	trace    *tracer
	log      *slog.Logger

	started       time.Time
	inShutdown    atomic.Bool
	closing       atomic.Bool  // Close was called: sessions end without a word
	verbose       atomic.Bool  // the run-time trace switch
	maxSize       atomic.Int64 // the run-time size limit
	filterOn      atomic.Bool  // the run-time content filter switch
	nextSession   atomic.Uint64
	faults        atomic.Pointer[faults] // the fault plan in force, if any
	authGate      *authGate              // admits calls of Authenticate (MaxAuthChecks)
	stats         counters
	replay        replayGuard  // of the management protocol
	refused       atomic.Int64 // management requests refused since the last log line
	refusedLogged atomic.Int64 // when that line was written, Unix nanoseconds
	web           webFront     // the HTTP view (web.go)
	lingering     atomic.Int64 // connections in a graceful close (hangUp)

	mu          sync.Mutex
	listeners   map[net.Listener]struct{}
	packetConns map[net.PacketConn]struct{}
	addr        net.Addr
	metricsAddr net.Addr
	sessions    map[*session]struct{}
	perIP       map[netip.Addr]int // sessions open now per client address (MaxConnsPerIP)
	tlsAddr     net.Addr
	wg          sync.WaitGroup // one per session goroutine
	closed      bool           // Close was called
	saverStop   chan struct{}  // stops the periodic saving of the counters
	saverDone   chan struct{}
	release     sync.Once // saves the counters, closes the Maildir root and the access log
}

// NewServer checks cfg, creates the data directory and returns a Server
// ready to serve.
func NewServer(cfg Config) (*Server, error) {
	srv := &Server{Config: cfg}
	if err := srv.init(); err != nil {
		return nil, err
	}
	return srv, nil
}

func (srv *Server) init() error {
	srv.initOnce.Do(func() { srv.initErr = srv.setup() })
	return srv.initErr
}

// preventInit makes a server that never started refuse to start, and waits
// for a start under way to finish, so that Shutdown and Close release
// whatever it opened.
func (srv *Server) preventInit() {
	srv.initOnce.Do(func() { srv.initErr = ErrServerClosed })
}

func (srv *Server) setup() error {
	set, err := srv.Config.settings()
	if err != nil {
		return err
	}
	srv.set = set
	srv.started = time.Now()
	srv.log = srv.Config.Logger
	if srv.log == nil {
		srv.log = slog.Default()
	}
	srv.maxSize.Store(srv.Config.MaxMessageBytes)
	if srv.Config.MaxMessageBytes == 0 {
		srv.maxSize.Store(DefaultMaxMessageBytes)
	}
	srv.verbose.Store(srv.Config.Verbose)
	srv.filterOn.Store(srv.Config.Filter != nil)
	srv.ctx, srv.cancel = context.WithCancel(context.Background())
	srv.authGate = newAuthGate(set.maxAuthChecks)
	srv.trace = newTracer(&srv.Config, &srv.verbose, &srv.web.events)
	if err := os.MkdirAll(set.dataDir, 0o700); err != nil {
		return fmt.Errorf("smtpd: data directory: %w", err)
	}
	if fi, err := os.Stat(set.dataDir); err == nil && writableByOthers(fi) {
		srv.log.Warn("smtpd: the data directory is writable by other users, who can plant files and links in it; chmod go-w it",
			"dir", set.dataDir, "mode", fi.Mode().Perm().String())
	}
	if srv.store, err = newMaildir(set.maildirRoot, set.hostname); err != nil {
		return fmt.Errorf("smtpd: Maildir root: %w", err)
	}
	srv.store.noSync, srv.store.log = srv.Config.NoSync, srv.log
	srv.access = newAccessLog(filepath.Join(set.dataDir, "access.log"))
	plan, err := newFaults(srv.Config.Faults)
	if err != nil {
		return err
	}
	srv.faults.Store(plan)
	srv.listeners = make(map[net.Listener]struct{})
	srv.packetConns = make(map[net.PacketConn]struct{})
	srv.sessions = make(map[*session]struct{})
	srv.perIP = make(map[netip.Addr]int)
	srv.loadState()
	return nil
}

// settings applies the defaults to c and checks it.
func (c *Config) settings() (settings, error) {
	s := settings{
		hostname:       c.Hostname,
		dataDir:        orDefault(c.DataDir, DefaultDataDir),
		maxRecipients:  orDefault(c.MaxRecipients, DefaultMaxRecipients),
		maxConns:       orDefault(c.MaxConns, DefaultMaxConns),
		maxErrors:      orDefault(c.MaxErrors, DefaultMaxErrors),
		commandTimeout: orDefault(c.CommandTimeout, DefaultCommandTimeout),
		dataTimeout:    orDefault(c.DataTimeout, DefaultDataTimeout),
		filterTimeout:  orDefault(c.FilterTimeout, DefaultFilterTimeout),

		authFailureDelay: orDefault(c.AuthFailureDelay, DefaultAuthFailureDelay),
		maxAuthFailures:  orDefault(c.MaxAuthFailures, DefaultMaxAuthFailures),
		maxConnsPerIP:    max(orDefault(c.MaxConnsPerIP, DefaultMaxConnsPerIP), 0),
		limitLoopback:    c.MaxConnsPerIP != 0,
		sessionTimeout:   orDefault(c.SessionTimeout, DefaultSessionTimeout),
		greetDelay:       c.GreetDelay,
		lmtp:             c.LMTP,
		maxAuthChecks:    orDefault(c.MaxAuthChecks, runtime.GOMAXPROCS(0)),

		addr:              orDefault(c.Addr, DefaultAddr),
		tlsAddr:           c.TLSAddr,
		metricsAddr:       c.MetricsAddr,
		httpAddr:          c.HTTPAddr,
		strictCRLF:        c.StrictCRLF,
		testMode:          c.TestMode,
		authenticate:      c.Authenticate,
		allowInsecureAuth: c.AllowInsecureAuth,
		requireAuth:       c.RequireAuth,
		proxyFrom:         slices.Clone(c.ProxyFrom),
		delivered:         c.Delivered,
		sessionStarted:    c.SessionStarted,
		sessionEnded:      c.SessionEnded,
		filter:            c.Filter,
		metricsKey:        slices.Clone(c.MetricsKey),
		stateFile:         c.StateFile,
	}
	s.maildirRoot = orDefault(c.MaildirRoot, filepath.Join(s.dataDir, "Maildir"))
	// The greeting, EHLO reply and Received header name the server with
	// a domain (RFC 5321 §4.1.1.1). A host whose own name is not one
	// still starts, as "localhost".
	if s.hostname == "" {
		s.hostname, _ = os.Hostname()
		if !validDomain(s.hostname) || strings.HasPrefix(s.hostname, "[") {
			s.hostname = "localhost"
		}
	}
	if !validDomain(s.hostname) {
		return s, fmt.Errorf("smtpd: Config.Hostname %q is not a domain or an address literal", s.hostname)
	}
	switch {
	case c.MaxMessageBytes < 0:
		return s, errors.New("smtpd: Config.MaxMessageBytes must not be negative")
	case c.MaxRecipients < 0:
		return s, errors.New("smtpd: Config.MaxRecipients must not be negative")
	case c.MaxConns < 0:
		return s, errors.New("smtpd: Config.MaxConns must not be negative")
	case c.MaxErrors < 0:
		return s, errors.New("smtpd: Config.MaxErrors must not be negative")
	case c.CommandTimeout < 0:
		return s, errors.New("smtpd: Config.CommandTimeout must not be negative")
	case c.DataTimeout < 0:
		return s, errors.New("smtpd: Config.DataTimeout must not be negative")
	case c.FilterTimeout < 0:
		return s, errors.New("smtpd: Config.FilterTimeout must not be negative")
	case c.AuthFailureDelay < 0:
		return s, errors.New("smtpd: Config.AuthFailureDelay must not be negative")
	case c.MaxAuthFailures < 0:
		return s, errors.New("smtpd: Config.MaxAuthFailures must not be negative")
	case c.MaxAuthChecks < 0:
		return s, errors.New("smtpd: Config.MaxAuthChecks must not be negative")
	case c.MaxConnsPerIP < -1:
		return s, errors.New("smtpd: Config.MaxConnsPerIP must be -1 (no limit), 0 (the default) or positive")
	case c.SessionTimeout < 0:
		return s, errors.New("smtpd: Config.SessionTimeout must not be negative")
	case c.GreetDelay < 0:
		return s, errors.New("smtpd: Config.GreetDelay must not be negative")
	case c.RequireAuth && c.Authenticate == nil && !c.TestMode:
		return s, errors.New("smtpd: Config.RequireAuth needs Config.Authenticate")
	case c.TLSAddr != "" && c.TLSConfig == nil:
		return s, errors.New("smtpd: Config.TLSAddr needs Config.TLSConfig")
	case c.MetricsAddr != "" && len(c.MetricsKey) == 0:
		return s, errors.New("smtpd: Config.MetricsAddr needs Config.MetricsKey")
	case len(c.MetricsKey) > 0 && len(c.MetricsKey) < minMetricsKey:
		return s, errors.New("smtpd: Config.MetricsKey must hold at least 16 bytes")
	}
	// A typo in an address is found now, not when ListenAndServe binds.
	for _, a := range [...]struct{ field, addr string }{{"Addr", c.Addr}, {"TLSAddr", c.TLSAddr}, {"MetricsAddr", c.MetricsAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); a.addr != "" && err != nil {
			return s, fmt.Errorf("smtpd: Config.%s: %w", a.field, err)
		}
	}
	for _, p := range c.ProxyFrom {
		if !p.IsValid() {
			return s, errors.New("smtpd: Config.ProxyFrom holds an invalid prefix")
		}
	}
	if c.TLSConfig != nil {
		var err error
		if s.tlsConfig, err = serverTLSConfig(c.TLSConfig, c.TLSSessionTickets); err != nil {
			return s, err
		}
	}
	s.domains = make(map[string]bool, len(c.Domains))
	for _, d := range c.Domains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if !validDomain(d) {
			return s, fmt.Errorf("smtpd: Config.Domains: %q is not a domain", d)
		}
		s.domains[d] = true
	}
	return s, nil
}

// orDefault returns v, or def when v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// validDomain reports whether d is a domain or an address literal.
func validDomain(d string) bool {
	p := &parser{s: d}
	var err error
	if strings.HasPrefix(d, "[") {
		_, err = p.addressLiteral()
	} else {
		_, err = p.domain()
	}
	return err == nil && p.i == len(d)
}

// isLocalDomain reports whether the server accepts mail for domain. The
// domain-less <postmaster> is always local (RFC 5321 §4.5.1).
func (srv *Server) isLocalDomain(domain string) bool {
	return len(srv.set.domains) == 0 || domain == "" || srv.set.domains[strings.ToLower(domain)]
}

// Serve accepts connections on l and serves each in its own goroutine. It
// always returns a non-nil error and closes l; after Shutdown or Close the
// error is ErrServerClosed.
func (srv *Server) Serve(l net.Listener) error {
	return srv.serve(l, false)
}

// ServeTLS is Serve for implicit TLS (RFC 8314 §3.3, the "submissions"
// port 465): every connection starts with a TLS handshake, made with
// Config.TLSConfig in the session's own goroutine within 30 seconds (or
// CommandTimeout if shorter), and the greeting follows over TLS. It returns
// an error at once when Config.TLSConfig is nil.
func (srv *Server) ServeTLS(l net.Listener) error {
	if err := srv.init(); err != nil {
		l.Close()
		return err
	}
	if srv.set.tlsConfig == nil {
		l.Close()
		return errors.New("smtpd: ServeTLS needs Config.TLSConfig")
	}
	return srv.serve(l, true)
}

func (srv *Server) serve(l net.Listener, implicitTLS bool) error {
	l = &onceCloseListener{Listener: l}
	defer l.Close()
	if err := srv.init(); err != nil {
		return err
	}
	if !srv.trackListener(l, true, implicitTLS) {
		return ErrServerClosed
	}
	defer srv.trackListener(l, false, implicitTLS)
	srv.startStateSaver()
	var delay time.Duration // backoff after temporary accept errors
	for {
		conn, err := l.Accept()
		if err != nil {
			if srv.shuttingDown() {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				srv.log.Error("smtpd: accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		srv.startSession(conn, implicitTLS)
	}
}

// startSession tracks a new connection and starts its goroutine, or turns it
// away when the server is full. Nothing that waits for the client happens
// here (no TLS handshake, no PROXY header): the accept loop must never
// block on one client.
func (srv *Server) startSession(conn net.Conn, implicitTLS bool) {
	srv.stats.connections.Add(1)
	srv.mu.Lock()
	if srv.shuttingDown() {
		srv.mu.Unlock()
		conn.Close()
		return
	}
	if len(srv.sessions) >= srv.set.maxConns {
		srv.wg.Add(1)
		srv.mu.Unlock()
		go srv.refuse(conn, implicitTLS) // calls srv.wg.Done
		return
	}
	s := newSession(srv, conn, srv.nextSession.Add(1))
	s.implicitTLS = implicitTLS
	srv.sessions[s] = struct{}{}
	srv.stats.sessions.Add(1)
	srv.wg.Add(1)
	srv.mu.Unlock()
	go s.serve() // session.end calls srv.wg.Done
}

// refuse answers a connection over MaxConns with 421 and closes it, in a
// goroutine of its own: the accept loop must not wait for the write, nor for
// the graceful close (hangUp). A new connection's send buffer is empty, so
// the write does not block; the deadline is there in case it ever does. On
// the implicit TLS port a plain-text reply would only be a TLS protocol error
// to the client, and a handshake is the very cost being refused: that
// connection is just closed.
func (srv *Server) refuse(conn net.Conn, implicitTLS bool) {
	defer srv.wg.Done()
	if !implicitTLS {
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		n, _ := conn.Write(replyTooManyConns(srv.set.hostname).appendTo(nil))
		srv.stats.bytesOut.Add(uint64(n))
	}
	srv.hangUp(conn, nil, true)
}

func (srv *Server) untrack(s *session) {
	srv.mu.Lock()
	delete(srv.sessions, s)
	srv.stats.sessions.Add(-1)
	srv.mu.Unlock()
}

// trackListener adds or removes l; it refuses to add once shutdown began.
func (srv *Server) trackListener(l net.Listener, add, implicitTLS bool) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if !add {
		delete(srv.listeners, l)
		return true
	}
	if srv.shuttingDown() {
		return false
	}
	srv.listeners[l] = struct{}{}
	switch {
	case implicitTLS && srv.tlsAddr == nil:
		srv.tlsAddr = l.Addr()
	case !implicitTLS && srv.addr == nil:
		srv.addr = l.Addr()
	}
	return true
}

// TLSAddr returns the address of the first listener the server served with
// ServeTLS, or nil before ServeTLS began.
func (srv *Server) TLSAddr() net.Addr {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.tlsAddr
}

// Addr returns the address of the first listener the server served with
// Serve, or nil before Serve began.
func (srv *Server) Addr() net.Addr {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.addr
}

func (srv *Server) shuttingDown() bool { return srv.inShutdown.Load() }

// Shutdown stops the server gracefully: it closes the listeners (and the
// management socket, and the HTTP view's, whose requests under way finish
// and whose event streams end), lets every
// session finish the transaction it is in, sends 421 4.3.2 to sessions
// between transactions, and waits for all sessions to end. If ctx ends
// first, Shutdown returns ctx.Err() and the remaining sessions go on; call
// Close to end them.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.inShutdown.Store(true)
	srv.preventInit()
	srv.mu.Lock()
	srv.closeListeners()
	for s := range srv.sessions {
		if s.idle.Load() {
			s.conn.SetReadDeadline(time.Now())
		}
	}
	srv.mu.Unlock()
	srv.web.shutdown(ctx) // requests under way finish; event streams end

	done := make(chan struct{})
	go func() {
		srv.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		srv.releaseResources()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once, waits for the
// session goroutines to return and releases the server's files. Messages
// being received are lost (their clients got no 250). A second Close returns
// ErrServerClosed.
func (srv *Server) Close() error {
	srv.closing.Store(true) // before inShutdown: no session may say goodbye now
	srv.inShutdown.Store(true)
	srv.preventInit()
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		return ErrServerClosed
	}
	srv.closed = true
	srv.closeListeners()
	for s := range srv.sessions {
		s.conn.Close()
	}
	srv.mu.Unlock()
	srv.web.close()
	if srv.cancel != nil {
		srv.cancel() // kills running filters
	}
	srv.wg.Wait()
	srv.releaseResources()
	return nil
}

func (srv *Server) closeListeners() {
	for l := range srv.listeners {
		l.Close()
	}
	for pc := range srv.packetConns {
		pc.Close()
	}
}

func (srv *Server) releaseResources() {
	srv.release.Do(func() {
		if srv.cancel != nil {
			srv.cancel()
		}
		if srv.initErr == nil && srv.store != nil {
			srv.stopStateSaver()
		}
		if srv.store != nil {
			srv.store.close()
		}
		if srv.access != nil {
			srv.access.close()
		}
	})
}

// accepted records a stored message, just before its 250 reply: counters,
// access log, the HTTP view, Delivered.
func (srv *Server) accepted(m *Message) {
	srv.stats.messages.Add(1)
	if err := srv.access.write(m, time.Now()); err != nil {
		srv.log.Error("smtpd: access log", "queue_id", m.ID, "err", err)
	}
	srv.web.stored(m)
	if srv.set.delivered != nil {
		srv.set.delivered(m)
	}
}

// onceCloseListener lets Serve and Shutdown both close a listener.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// queueIDEncoding writes queue ids in upper-case base32, without padding.
var queueIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newQueueID returns a random 13-character queue id.
func newQueueID() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	return queueIDEncoding.EncodeToString(b[:])
}
