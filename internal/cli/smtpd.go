// Package cli holds the real code of the smtpd commands, so that tests can
// run exactly what ships: cmd/smtpd's main is one line calling SmtpdMain.
package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/internal/openfiles"
	"github.com/tpe-protos/smtpd/internal/webaddr"
)

// Exit statuses of the commands.
const (
	exitOK      = 0
	exitFailure = 1 // the server could not run (a port in use, …)
	exitUsage   = 2 // bad flags, an unusable directory
)

// SmtpdMain runs the smtpd command with the process's arguments and signals.
// The first SIGINT or SIGTERM shuts the server down gracefully; a second one
// kills the process (accepted messages are on disk by then).
func SmtpdMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return Smtpd(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// smtpdFlags are the command line of smtpd (README: Command line).
type smtpdFlags struct {
	port, metricsPort     int
	listen, metricsListen string
	dataDir, maildir      string
	hostname, domains     string
	maxSize               int64
	maxRcpt, maxConns     int
	maxErrors             int
	verbose               bool
	explain, traceBody    bool
	strictCRLF            bool
	noSync                bool
	color                 string
	idleTimeout           time.Duration
	dataTimeout           time.Duration
	shutdownTimeout       time.Duration
	http, metricsHTTP     string
	faults                string
	testMode              bool
	filter                string
	filterTimeout         time.Duration

	// Security (SECURITY.md).
	tlsMode, tlsCert, tlsKey string
	tlsPort                  int
	users                    string
	hashPassword             bool
	allowInsecureAuth        bool
	requireAuth              bool
	authDelay                time.Duration
	maxAuthFailures          int
	maxConnsPerIP            int
	sessionTimeout           time.Duration
	greetDelay               time.Duration
	proxyFrom                string
	cpuProfile, memProfile   string
	proxyPrefixes            []netip.Prefix // parsed by check

	lmtp       bool   // speak LMTP (RFC 2033)
	lmtpSocket string // also serve a Unix socket
}

func (f *smtpdFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.port, "p", 2525, "SMTP TCP `port` (0: any free port, printed at startup; -1: none, with -lmtp-socket)")
	fs.StringVar(&f.listen, "l", "", "SMTP listen `address` (default all interfaces)")
	fs.IntVar(&f.metricsPort, "M", 7030, "management UDP `port` (0: any free port, printed; -1: off)")
	fs.StringVar(&f.metricsListen, "L", "127.0.0.1", "management listen `address`")
	fs.StringVar(&f.dataDir, "d", defaultDataDir(), "data `directory`: Maildir/, access.log, metrics.key, metrics.state; $"+dataDirEnv+" sets the default")
	fs.StringVar(&f.maildir, "maildir", "", "Maildir root `directory` (default DIR/Maildir)")
	fs.StringVar(&f.hostname, "hostname", "", "`name` in the greeting, EHLO reply and Received header (default the host name)")
	fs.StringVar(&f.domains, "domains", "", "comma-separated local `domains`; other recipients get 550 (default accept any)")
	fs.Int64Var(&f.maxSize, "max-size", smtpd.DefaultMaxMessageBytes, "largest message in `bytes`, advertised as SIZE")
	fs.IntVar(&f.maxRcpt, "max-rcpt", smtpd.DefaultMaxRecipients, "most recipients per message")
	fs.IntVar(&f.maxConns, "max-conns", smtpd.DefaultMaxConns, "most concurrent sessions (the default is lowered to fit the open-file limit)")
	fs.IntVar(&f.maxErrors, "max-errors", smtpd.DefaultMaxErrors, "error replies before a session is closed")
	fs.BoolVar(&f.verbose, "v", false, "start with the session trace on (-explain and -trace-body turn it on too)")
	fs.StringVar(&f.color, "color", "auto", "trace colors: auto, always or never")
	fs.BoolVar(&f.explain, "explain", false, "follow each reply in the trace with what it means and its RFC section (turns the trace on)")
	fs.BoolVar(&f.traceBody, "trace-body", false, "trace message data whole (default: the first lines and the size; turns the trace on)")
	fs.BoolVar(&f.strictCRLF, "strict-crlf", false, "refuse lines ending in a bare LF (default: take them, and say so in the trace)")
	fs.BoolVar(&f.noSync, "no-sync", false, "store without flushing to disk (tests, demos, local sinks); by default a 250 means flushed")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", smtpd.DefaultCommandTimeout, "how long to wait for a command")
	fs.DurationVar(&f.dataTimeout, "data-timeout", smtpd.DefaultDataTimeout, "how long to wait for each block of message data")
	fs.StringVar(&f.http, "http", "", "serve the web view, JSON API, event stream and Prometheus /metrics on `ADDR` (a port alone means 127.0.0.1; default off)")
	fs.StringVar(&f.metricsHTTP, "metrics-http", "", "the same as -http (`ADDR`), under its old name")
	fs.StringVar(&f.faults, "faults", "", "fault plan `file` (see README: Fault plans); SIGHUP reloads it")
	fs.BoolVar(&f.testMode, "test-mode", false, "for clients under test: AUTH offered without TLS and any credentials accepted, unknown parameters ignored")
	fs.StringVar(&f.filter, "filter", "", "content filter `command`, run without a shell: the message on its stdin, its stdout stored")
	fs.DurationVar(&f.filterTimeout, "filter-timeout", smtpd.DefaultFilterTimeout, "how long the content filter may run")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a graceful shutdown waits for sessions")

	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate `file` (PEM, chain included), for STARTTLS and -tls-port")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key `file` (PEM)")
	fs.StringVar(&f.tlsMode, "tls", "", "`auto`: use a self-signed certificate kept in the data directory, made on first use")
	fs.IntVar(&f.tlsPort, "tls-port", -1, "implicit TLS `port` (RFC 8314; 0: any free port, printed; -1: off)")
	fs.StringVar(&f.users, "users", "", "AUTH users `file`: user:bcrypt-hash lines (see -hash-password)")
	fs.BoolVar(&f.hashPassword, "hash-password", false, "read a password on stdin, print its bcrypt hash for -users, and exit")
	fs.BoolVar(&f.allowInsecureAuth, "allow-insecure-auth", false, "offer AUTH without TLS too (passwords in clear)")
	fs.BoolVar(&f.requireAuth, "require-auth", false, "refuse MAIL from clients that have not authenticated (530 5.7.0)")
	fs.DurationVar(&f.authDelay, "auth-delay", smtpd.DefaultAuthFailureDelay, "wait before answering bad credentials")
	fs.IntVar(&f.maxAuthFailures, "max-auth-failures", smtpd.DefaultMaxAuthFailures, "failed AUTH attempts before a session is closed")
	fs.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", 0, "most concurrent sessions from one client address (0: 100, loopback clients exempt; a value given applies to all; -1: no limit)")
	fs.DurationVar(&f.sessionTimeout, "session-timeout", smtpd.DefaultSessionTimeout, "longest time a session may last")
	fs.DurationVar(&f.greetDelay, "greet-delay", 0, "refuse early talkers: wait this long before the greeting, and a client talking meanwhile gets 554 (default 0: no wait, a client talking first is served)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) of the whole run to `file`")
	fs.StringVar(&f.memProfile, "memprofile", "", "write an allocation profile (go tool pprof) to `file` at exit")
	fs.StringVar(&f.proxyFrom, "proxy-from", "", "comma-separated `CIDRs` of trusted proxies that send a PROXY protocol header")
	fs.BoolVar(&f.lmtp, "lmtp", false, "speak LMTP (RFC 2033) instead of SMTP, for a mail system that hands over local deliveries")
	fs.StringVar(&f.lmtpSocket, "lmtp-socket", "", "serve LMTP on a Unix socket at `path` too (mode 0660); implies -lmtp")
}

// resolvePaths makes the file names of the flags that are relative
// relative to dir instead of the working directory.
func (f *smtpdFlags) resolvePaths(dir string) {
	for _, name := range []*string{&f.dataDir, &f.maildir, &f.users, &f.tlsCert, &f.tlsKey, &f.faults, &f.cpuProfile, &f.memProfile} {
		if *name != "" && !filepath.IsAbs(*name) {
			*name = filepath.Join(dir, *name)
		}
	}
}

// check refuses values that Config would take as "default" or that make no
// sense, so that a typo is an error instead of a surprise.
func (f *smtpdFlags) check() error {
	switch {
	case f.port < -1 || f.port > 65535:
		return fmt.Errorf("-p %d: not a port number or -1", f.port)
	case f.port == -1 && f.lmtpSocket == "":
		return errors.New("-p -1 leaves nothing to serve without -lmtp-socket")
	case f.metricsPort < -1 || f.metricsPort > 65535:
		return fmt.Errorf("-M %d: not a port number or -1", f.metricsPort)
	case f.maxSize <= 0:
		return fmt.Errorf("-max-size %d: must be positive", f.maxSize)
	case f.maxRcpt <= 0:
		return fmt.Errorf("-max-rcpt %d: must be positive", f.maxRcpt)
	case f.maxConns <= 0:
		return fmt.Errorf("-max-conns %d: must be positive", f.maxConns)
	case f.maxErrors <= 0:
		return fmt.Errorf("-max-errors %d: must be positive", f.maxErrors)
	case f.idleTimeout <= 0 || f.dataTimeout <= 0 || f.shutdownTimeout <= 0 || f.filterTimeout <= 0:
		return errors.New("timeouts must be positive")
	case f.tlsPort < -1 || f.tlsPort > 65535:
		return fmt.Errorf("-tls-port %d: not a port number or -1", f.tlsPort)
	case f.tlsMode != "" && f.tlsMode != "auto":
		return fmt.Errorf("-tls %q: the only mode is auto", f.tlsMode)
	case f.tlsMode == "auto" && (f.tlsCert != "" || f.tlsKey != ""):
		return errors.New("-tls auto and -tls-cert/-tls-key exclude each other")
	case (f.tlsCert == "") != (f.tlsKey == ""):
		return errors.New("-tls-cert and -tls-key go together")
	case f.tlsPort >= 0 && f.tlsMode == "" && f.tlsCert == "":
		return errors.New("-tls-port needs a certificate: -tls-cert and -tls-key, or -tls auto")
	case f.requireAuth && f.users == "":
		return errors.New("-require-auth needs -users")
	case f.allowInsecureAuth && f.users == "":
		return errors.New("-allow-insecure-auth needs -users")
	case f.authDelay <= 0:
		return fmt.Errorf("-auth-delay %v: must be positive", f.authDelay)
	case f.maxAuthFailures <= 0:
		return fmt.Errorf("-max-auth-failures %d: must be positive", f.maxAuthFailures)
	case f.maxConnsPerIP < -1:
		return fmt.Errorf("-max-conns-per-ip %d: must be -1 (no limit), 0 (the default) or positive", f.maxConnsPerIP)
	case f.sessionTimeout <= 0:
		return fmt.Errorf("-session-timeout %v: must be positive", f.sessionTimeout)
	case f.greetDelay < 0:
		return fmt.Errorf("-greet-delay %v: must not be negative", f.greetDelay)
	case f.http != "" && f.metricsHTTP != "" && f.http != f.metricsHTTP:
		return errors.New("-http and -metrics-http name the same listener: give one")
	}
	httpFlag := "-http"
	if f.http == "" {
		f.http, httpFlag = f.metricsHTTP, "-metrics-http"
	}
	if f.http != "" && !isListenAddr(webaddr.Resolve(f.http)) {
		return fmt.Errorf("%s %q: not a port, or a host and a port", httpFlag, f.http)
	}
	for _, p := range strings.Split(f.proxyFrom, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			// A single address is a network of one.
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return fmt.Errorf("-proxy-from: %q is not an address or a CIDR network", p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		f.proxyPrefixes = append(f.proxyPrefixes, prefix.Masked())
	}
	return nil
}

// isListenAddr reports whether addr is a host and a port that net.Listen
// can parse, so that a mistyped address is a usage error (exit status 2)
// and only one that cannot be bound fails at listen time (exit status 1).
func isListenAddr(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	_, err = net.LookupPort("tcp", port)
	return err == nil
}

func (f *smtpdFlags) config(stdout, stderr io.Writer) (smtpd.Config, error) {
	colorMode, err := parseColorMode(f.color)
	if err != nil {
		return smtpd.Config{}, err
	}
	var domains []string
	for _, d := range strings.Split(f.domains, ",") {
		if d = strings.TrimSpace(d); d != "" {
			domains = append(domains, d)
		}
	}
	cfg := smtpd.Config{
		Hostname:        f.hostname,
		DataDir:         f.dataDir,
		MaildirRoot:     f.maildir,
		Domains:         domains,
		MaxMessageBytes: f.maxSize,
		MaxRecipients:   f.maxRcpt,
		MaxConns:        f.maxConns,
		MaxErrors:       f.maxErrors,
		CommandTimeout:  f.idleTimeout,
		DataTimeout:     f.dataTimeout,
		Logger:          slog.New(slog.NewTextHandler(stderr, nil)),
		Trace:           stdout,
		TraceColor:      colorMode,
		Verbose:         f.verbose,
		Explain:         f.explain,
		TraceBody:       f.traceBody,
		StrictCRLF:      f.strictCRLF,
		NoSync:          f.noSync,

		AllowInsecureAuth: f.allowInsecureAuth,
		RequireAuth:       f.requireAuth,
		AuthFailureDelay:  f.authDelay,
		MaxAuthFailures:   f.maxAuthFailures,
		MaxConnsPerIP:     f.maxConnsPerIP,
		SessionTimeout:    f.sessionTimeout,
		GreetDelay:        f.greetDelay,
		ProxyFrom:         f.proxyPrefixes,
		LMTP:              f.lmtp || f.lmtpSocket != "",
	}
	if f.users != "" {
		users, err := loadUsers(f.users)
		if err != nil {
			return cfg, fmt.Errorf("-users %s: %w", f.users, err)
		}
		cfg.Authenticate = users.Authenticate
	}
	switch {
	case f.tlsCert != "":
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return cfg, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	case f.tlsMode == "auto":
		if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
			return cfg, fmt.Errorf("data directory: %w", err)
		}
		hostname := f.hostname
		if hostname == "" {
			if hostname, _ = os.Hostname(); hostname == "" {
				hostname = "localhost"
			}
		}
		cert, err := loadOrCreateCert(f.dataDir, hostname, time.Now())
		if err != nil {
			return cfg, fmt.Errorf("-tls auto: %w", err)
		}
		cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	cfg.TestMode = f.testMode
	if f.faults != "" {
		plan, err := readFaultPlan(f.faults)
		if err != nil {
			return cfg, fmt.Errorf("-faults: %w", err)
		}
		cfg.Faults = plan
	}
	if f.filter != "" {
		args, err := splitWords(f.filter)
		if err != nil || len(args) == 0 {
			return cfg, fmt.Errorf("-filter %q: not a command line", f.filter)
		}
		if _, err := exec.LookPath(args[0]); err != nil {
			return cfg, fmt.Errorf("-filter: %w", err)
		}
		cfg.Filter = smtpd.CommandFilter{Args: args}
		cfg.FilterTimeout = f.filterTimeout
	}
	// The server creates the Maildir root at its first delivery; the
	// command makes sure now that it can, so that a bad -d or -maildir is
	// a usage error rather than a 451 later.
	maildirRoot := f.maildir
	if maildirRoot == "" {
		maildirRoot = filepath.Join(f.dataDir, "Maildir")
	}
	if err := os.MkdirAll(maildirRoot, 0o700); err != nil {
		return cfg, fmt.Errorf("the Maildir root: %w", err)
	}
	// The counters persist whether or not the management protocol is on.
	cfg.StateFile = filepath.Join(f.dataDir, "metrics.state")
	if f.metricsPort >= 0 {
		// The key lives in the data directory, which must exist
		// before the server creates it.
		if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
			return cfg, fmt.Errorf("data directory: %w", err)
		}
		key, err := loadOrCreateKey(filepath.Join(f.dataDir, "metrics.key"))
		if err != nil {
			return cfg, fmt.Errorf("management key: %w", err)
		}
		cfg.MetricsKey = key
	}
	return cfg, nil
}

// Smtpd runs the smtpd command: it serves until ctx is done, then shuts
// down gracefully. It returns the exit status. stdin is only read by
// -hash-password.
func Smtpd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runSmtpd(ctx, args, stdin, stdout, stderr, hosting{})
}

// hosting is what differs when smtpd runs inside another program (see
// SmtpdEmbedded) instead of as a process of its own.
type hosting struct {
	dir  string           // relative file names in the flags are taken from here
	hup  <-chan os.Signal // reloads the fault plan; nil: the process's SIGHUP
	kill <-chan struct{}  // closed: close every session at once
}

func runSmtpd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, host hosting) int {
	fs := flag.NewFlagSet("smtpd", flag.ContinueOnError)
	var f smtpdFlags
	f.register(fs)
	if code, done := parseCommandLine(fs, args, stdout, stderr, "", ""); done {
		return code
	}
	if f.hashPassword {
		return hashPassword(stdin, stdout, stderr)
	}
	if host.dir != "" {
		f.resolvePaths(host.dir)
	}
	if err := f.check(); err != nil {
		return usageError(stderr, "smtpd", err)
	}
	if !isSet(fs, "v") {
		// Asking for explanations or whole messages is asking for the
		// trace; -v=false -explain starts quiet, ready for verbose-on.
		f.verbose = f.explain || f.traceBody
	}
	cfg, err := f.config(stdout, stderr)
	if err != nil {
		return usageError(stderr, "smtpd", err)
	}
	// What the fitting says waits until the command line is known good:
	// a usage error is one line.
	var fitted strings.Builder
	cfg.MaxConns = fitOpenFiles(&fitted, cfg.MaxConns, isSet(fs, "max-conns"), openFileLimit(), cfg.Filter != nil)
	srv, err := smtpd.NewServer(cfg)
	if err != nil {
		// A bad hostname or domain, or a directory that cannot be used:
		// say it in the words of the command line.
		return usageError(stderr, "smtpd", errors.New(configToFlags.Replace(strings.TrimPrefix(err.Error(), "smtpd: "))))
	}
	io.WriteString(stderr, fitted.String())
	stopProfiles, err := startProfiles(f.cpuProfile, f.memProfile)
	if err != nil {
		srv.Close()
		return usageError(stderr, "smtpd", err)
	}
	defer stopProfiles(stderr)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f.faults != "" {
		go reloadFaultsOnHUP(ctx, srv, f.faults, host.hup, stderr)
	}
	served, err := listenAndServe(srv, &f, stdout)
	if err != nil {
		srv.Close()
		fmt.Fprintf(stderr, "smtpd: %v\n", err)
		return exitFailure
	}
	return serveUntilDone(ctx, srv, served, f.shutdownTimeout, host.kill, stderr)
}

// configToFlags names the flags behind the Config fields in NewServer's
// errors.
var configToFlags = strings.NewReplacer("Config.Hostname", "-hostname", "Config.Domains", "-domains")

// fitOpenFiles returns the session limit to use under the open-file limit
// (0: unknown), with or without a content filter. A session holds a few
// files (see internal/openfiles); past the limit a new client would wait
// unanswered in the listen queue while Serve backs off, or a message in
// flight would fail. So the default -max-conns is lowered to fit, and a
// -max-conns given that does not fit is kept, with a warning.
func fitOpenFiles(stderr io.Writer, maxConns int, given bool, limit uint64, filter bool) int {
	if limit == 0 || uint64(openfiles.Server(maxConns, filter)) <= limit {
		return maxConns
	}
	fits := openfiles.SessionsWithin(int(min(limit, math.MaxInt32)), filter)
	if !given {
		fmt.Fprintf(stderr, "smtpd: at most %d sessions: the open-file limit is %d (see -max-conns)\n", fits, limit)
		return fits
	}
	fmt.Fprintf(stderr, "smtpd: warning: -max-conns %d does not fit under the open-file limit %d; "+
		"raise the limit (ulimit -n) or lower -max-conns to %d\n", maxConns, limit, fits)
	return maxConns
}

// isSet reports whether the command line gave the flag name.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// listenAndServe binds the listeners the flags ask for, prints one
// "Listening on" line for each, and serves them. Each serving goroutine
// sends its result on the returned channel.
func listenAndServe(srv *smtpd.Server, f *smtpdFlags, stdout io.Writer) (<-chan error, error) {
	var (
		l, unixL, tlsL, httpL net.Listener
		pc                    net.PacketConn
		err                   error
	)
	closeAll := func() {
		for _, c := range []io.Closer{l, unixL, tlsL, httpL, pc} {
			if c != nil {
				c.Close()
			}
		}
	}
	if f.port >= 0 {
		if l, err = net.Listen("tcp", net.JoinHostPort(f.listen, strconv.Itoa(f.port))); err != nil {
			return nil, err
		}
	}
	if f.lmtpSocket != "" {
		if unixL, err = listenUnix(f.lmtpSocket); err != nil {
			closeAll()
			return nil, fmt.Errorf("-lmtp-socket: %w", err)
		}
	}
	if f.tlsPort >= 0 {
		if tlsL, err = net.Listen("tcp", net.JoinHostPort(f.listen, strconv.Itoa(f.tlsPort))); err != nil {
			closeAll()
			return nil, fmt.Errorf("-tls-port: %w", err)
		}
	}
	if f.metricsPort >= 0 {
		if pc, err = net.ListenPacket("udp", net.JoinHostPort(f.metricsListen, strconv.Itoa(f.metricsPort))); err != nil {
			closeAll()
			return nil, err
		}
	}
	if f.http != "" {
		if httpL, err = webaddr.Listen(f.http); err != nil {
			closeAll()
			return nil, fmt.Errorf("-http: %w", err)
		}
	}
	if httpL != nil {
		// The view first: it keeps the transcripts of the sessions
		// that start from now on, and ServeWeb, in its goroutine
		// below, may make it only after the first message came.
		srv.Handler()
	}
	served := make(chan error, 4)
	// All the "Listening on" lines in one write: a script that sees one
	// of them sees them all.
	var lines strings.Builder
	if l != nil {
		fmt.Fprintf(&lines, "Listening on TCP %s\n", l.Addr())
		go func() { served <- srv.Serve(l) }()
	}
	if unixL != nil {
		fmt.Fprintf(&lines, "Listening on UNIX %s\n", unixL.Addr())
		go func() { served <- srv.Serve(unixL) }()
	}
	if tlsL != nil {
		fmt.Fprintf(&lines, "Listening on TLS %s\n", tlsL.Addr())
		go func() { served <- srv.ServeTLS(tlsL) }()
	}
	if pc != nil {
		fmt.Fprintf(&lines, "Listening on UDP %s\n", pc.LocalAddr())
		go func() { served <- srv.ServeMetrics(pc) }()
	}
	if httpL != nil {
		fmt.Fprintf(&lines, "Listening on HTTP %s\n", httpL.Addr())
		go func() { served <- srv.ServeWeb(httpL) }()
	}
	io.WriteString(stdout, lines.String())
	return served, nil
}

// listenUnix listens on a Unix socket at path, with mode 0660: the server's
// user and group may connect (make the group the mail system's, with a
// setgid directory or the server's own group). A socket left at path by a
// server that is gone is replaced; one a server still listens on is not.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: a server listens there already", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// serveUntilDone waits until ctx is done or serving fails, then shuts the
// server down, waiting at most grace for sessions to finish, or until kill
// is closed.
func serveUntilDone(ctx context.Context, srv *smtpd.Server, served <-chan error, grace time.Duration, kill <-chan struct{}, stderr io.Writer) int {
	select {
	case err := <-served:
		srv.Close()
		fmt.Fprintf(stderr, "smtpd: %v\n", err)
		return exitFailure
	case <-ctx.Done():
	}
	fmt.Fprintln(stderr, "smtpd: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	killed := make(chan struct{})
	go func() {
		select {
		case <-kill:
			close(killed)
			cancel()
		case <-shutdownCtx.Done():
		}
	}()
	if err := srv.Shutdown(shutdownCtx); err != nil && !isClosed(killed) {
		fmt.Fprintf(stderr, "smtpd: sessions still open after %v; closing them\n", grace)
	}
	srv.Close()
	return exitOK
}

// isClosed reports whether c is closed.
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// parseCommandLine parses args. Positional arguments are refused unless
// argsUsage names them. done reports that the command must exit with code:
// after -h (usage on stdout), or after a bad flag reported in one line.
func parseCommandLine(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, argsUsage, help string) (code int, done bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "Usage: %s [flags] %s\n", fs.Name(), argsUsage)
		fs.PrintDefaults()
		if help != "" {
			fmt.Fprintln(stdout, help)
		}
		return exitOK, true
	case err != nil:
		return usageError(stderr, fs.Name(), err), true
	case fs.NArg() > 0 && argsUsage == "":
		return usageError(stderr, fs.Name(), fmt.Errorf("unexpected argument %q", fs.Arg(0))), true
	}
	return 0, false
}

// usageError prints err as the one line a bad command line gets.
func usageError(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "%s: %v (see %s -h)\n", name, err, name)
	return exitUsage
}

// loadUsers reads the users file of -users.
func loadUsers(name string) (smtpd.Users, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return smtpd.ParseUsers(f)
}

// hashPassword is -hash-password: it reads a password from stdin (one line;
// its line ending is not part of it) and prints its bcrypt hash for a users
// file. Nothing is echoed or prompted: pipe the password in, e.g.
// "printf %s 'secret' | smtpd -hash-password".
func hashPassword(stdin io.Reader, stdout, stderr io.Writer) int {
	data, err := io.ReadAll(io.LimitReader(stdin, 4096))
	if err != nil {
		return usageError(stderr, "smtpd", fmt.Errorf("-hash-password: %w", err))
	}
	password, _, _ := strings.Cut(string(data), "\n")
	password = strings.TrimSuffix(password, "\r")
	if password == "" {
		return usageError(stderr, "smtpd", errors.New("-hash-password: no password on standard input"))
	}
	// bcrypt uses at most 72 bytes: a longer password is refused rather
	// than silently cut.
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return usageError(stderr, "smtpd", fmt.Errorf("-hash-password: %v", err))
	}
	fmt.Fprintf(stdout, "%s\n", hash)
	return exitOK
}

// readFaultPlan reads a fault plan file.
func readFaultPlan(name string) (*smtpd.FaultPlan, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	plan, err := smtpd.ParseFaultPlan(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "smtpd: "))
	}
	return plan, nil
}

// reloadFaultsOnHUP replaces the server's fault plan with the file's content
// at each signal on hup (nil: at each SIGHUP of the process), until ctx
// ends. A file that does not parse leaves the plan in force and is
// reported.
func reloadFaultsOnHUP(ctx context.Context, srv *smtpd.Server, name string, hup <-chan os.Signal, stderr io.Writer) {
	if hup == nil {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGHUP)
		defer signal.Stop(c)
		hup = c
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		plan, err := readFaultPlan(name)
		if err == nil {
			err = srv.SetFaults(plan)
		}
		if err != nil {
			fmt.Fprintf(stderr, "smtpd: -faults not reloaded: %v\n", err)
			continue
		}
		fmt.Fprintf(stderr, "smtpd: fault plan reloaded from %s (%d rules)\n", name, len(plan.Rules))
	}
}
