package smtpd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// state is where a session stands in the mail transaction of RFC 5321 §3.3.
type state int

const (
	stateGreeted state = iota // 220 sent; waiting for HELO/EHLO
	stateReady                // HELO/EHLO done; no transaction open
	stateMail                 // MAIL accepted; a recipient is needed
	stateRcpt                 // at least one RCPT accepted; DATA allowed
)

var stateNames = [...]string{"greeted", "ready", "mail", "rcpt"}

func (st state) String() string { return stateNames[st] }

// maxCommandLine is the longest command line, CRLF included
// (RFC 5321 §4.5.3.1.4).
const maxCommandLine = 512

// readBufferSize is the size of a session's input buffer: a command line fits
// many times over, and message data is read in chunks of this size.
const readBufferSize = 4096

var (
	errLineTooLong = errors.New("line too long")
	errBareLF      = errors.New("line ends in a bare LF")
)

// replyHangUp is the "reply" of a handler that finds the connection broken:
// nothing can be sent, the session just ends.
var replyHangUp = reply{close: true}

// session is one SMTP connection. Its goroutine alone reads and writes the
// connection; other goroutines only touch the atomic idle flag and the
// connection's deadlines (Shutdown).
type session struct {
	srv    *Server
	conn   net.Conn
	br     *bufio.Reader // the only reader of conn: PIPELINING must lose nothing
	out    []byte        // replies not yet flushed
	id     string
	remote net.Addr

	// What the client said it is.
	helo  string
	esmtp bool

	// The mail transaction (RFC 5321 §3.3).
	state    state
	from     address
	nullFrom bool
	params   mailParams
	rcpts    []address
	// rcptParams holds the parameters of each of rcpts (DSN, dsn.go);
	// nil while none had any.
	rcptParams []rcptParams
	// chunks is the message being sent with BDAT (bdat.go), from the
	// first chunk to the last; nil otherwise.
	chunks   *chunked
	rcptSeen map[address]bool // rcpts, domains lower-cased: each is kept once
	// rcptReplies holds, in LMTP, for each RCPT answered 250 in order, the
	// index in rcpts of its recipient: a recipient given twice is kept once
	// but is answered twice after the data (RFC 2033 §4.2).
	rcptReplies []int

	// The session's log, when the server keeps one (Message.Transcript,
	// Config.SessionStarted); nil otherwise.
	log *SessionLog

	faultPlan   *faults     // the plan faultCounts count for
	faultCounts map[int]int // occurrences per rule of the plan, for PerSession rules

	errors int         // replies counted against Config.MaxErrors
	junk   int         // commands that made no progress (see countJunk)
	lfOnly bool        // the current command line ended in a bare LF
	crlf   bool        // a command line of the session ended in CR LF (see readDataLF)
	hinted bool        // the trace has said that SMTP wants CRLF
	inData bool        // reading message data: each read gets DataTimeout
	idle   atomic.Bool // blocked waiting for a command outside a transaction
	parked bool        // idle: the wait goes on in a new goroutine (resume)

	// The connection as the client sees it.
	writeErr   error // the write that failed: nothing more can be sent
	peerClosed bool  // a read saw the client's end of the stream

	// The client's lines are secret until it sends a command again: they
	// may be the credentials of an AUTH that was refused (see
	// tracedCommand).
	afterAuthRefused bool

	// Security (tls.go, auth.go, limits.go, proxy.go).
	implicitTLS  bool                 // served by ServeTLS: handshake first
	tlsConn      *tls.Conn            // set once TLS is on; conn stays the plain connection
	tlsState     *tls.ConnectionState // of tlsConn
	authUser     string               // the user AUTH accepted; "" before
	authzID      string               // the authorization identity AUTH PLAIN gave, if any
	authPassword string               // their password, kept in TestMode only
	authFailures int                  // failed AUTH attempts (MaxAuthFailures)
	deadline     time.Time            // end of the session (SessionTimeout)
	ip           netip.Addr           // the client address counted in MaxConnsPerIP
}

func newSession(srv *Server, conn net.Conn, id uint64) *session {
	s := &session{srv: srv, conn: conn, id: strconv.FormatUint(id, 10), remote: conn.RemoteAddr()}
	s.log = srv.newSessionLog(s.id, s.remote)
	s.deadline = time.Now().Add(srv.set.sessionTimeout)
	s.acquireReader()
	return s
}

// Read reads from the connection for the session's bufio.Reader, counting
// the bytes. It is called only when the buffer lacks what the session needs,
// so the read may wait for the client: the replies queued so far are sent
// first, in command mode and in message data alike. A client that pipelines
// (RFC 2920) and then waits for them, or sends DATA and the start of its
// message together, is never left waiting for a reply the server holds.
// While message data is read, every read gets a fresh DataTimeout:
// RFC 5321 §4.5.3.2.6 times each block of data, not the whole message.
func (s *session) Read(p []byte) (int, error) {
	if err := s.flush(); err != nil {
		return 0, err
	}
	if s.inData {
		s.conn.SetReadDeadline(s.capDeadline(time.Now().Add(s.srv.set.dataTimeout)))
	}
	n, err := s.stream().Read(p)
	s.srv.stats.bytesIn.Add(uint64(n))
	if err == io.EOF {
		s.peerClosed = true
	}
	return n, err
}

// serve is the session's first goroutine: admission and greeting, then
// commands (see converse).
func (s *session) serve() {
	defer s.exit()
	s.event("connected from %s", s.remote)
	if s.greet() {
		s.converse()
	}
}

// greet admits the client and sends the greeting; it reports whether the
// session goes on.
func (s *session) greet() bool {
	r, ok := s.admit()
	s.started()
	if !ok {
		s.send(r)
		s.flush()
		return false
	}
	greeting := s.greeting()
	if r, ok := s.fault(FaultConnect, remoteIP(s.remote).String()); ok {
		// A fault's greeting; any but 2xx turns the client away.
		greeting = r
		greeting.close = r.close || r.code/100 != 2
	}
	s.send(greeting)
	if greeting.close {
		s.flush()
		return false
	}
	return true
}

// converse answers commands until the session ends, or until the client
// has been silent for parkAfter between transactions: then it sets s.parked
// and returns, and exit hands the wait to a new goroutine (resume).
func (s *session) converse() {
	for {
		line, err := s.readCommand()
		if err == errParked {
			s.parked = true
			return
		}
		if !s.answer(line, err) {
			return
		}
	}
}

// resume is the whole of an idle session's goroutine. Its wait sits a few
// small frames above the goroutine's start, so the goroutine keeps the
// runtime's smallest stack (2 KiB) for as long as the client is silent,
// however deep the commands before went: the goroutine that ran them has
// exited and its stack is free. The runtime shrinks a stack only at GC, by
// half and only when less than a quarter of it is in use, so waiting on the
// old goroutine kept its 4 KiB (or more) for the whole idle time.
func (s *session) resume() {
	defer s.exit()
	err := waitReadable(s.conn)
	s.acquireReader()
	var line string
	if err == nil {
		line, err = s.readLine()
	}
	s.afterRead(true)
	if s.answer(line, err) {
		s.converse()
	}
}

// exit is deferred by each of the session's goroutines. It ends the session,
// unless the session has only fallen idle: then a new goroutine waits for
// the client.
func (s *session) exit() {
	if p := recover(); p != nil {
		s.crashed(p)
	} else if s.parked {
		s.parked = false
		go s.resume()
		return
	}
	s.end()
}

// answer replies to a command line, or to the error that came instead of
// one, and reports whether the session goes on.
func (s *session) answer(line string, err error) bool {
	r, err := s.reply(line, err)
	if err != nil {
		s.event("disconnected: %v", traceReason(err))
		return false
	}
	s.send(r)
	if r.close {
		if r.code != 0 {
			// Traced before the write, so that a client that
			// reconnects at once is traced after it.
			s.event("server hangs up")
			s.flush()
		}
		return false
	}
	if r.isError() {
		s.errors++
	}
	if s.errors >= s.srv.set.maxErrors {
		s.send(replyTooManyErrors(s.srv.set.hostname))
		s.flush()
		return false
	}
	// Shutdown lets a transaction finish; between transactions the
	// session says goodbye.
	if s.srv.shuttingDown() && s.state < stateMail {
		if !s.srv.closing.Load() {
			s.send(replyShuttingDown(s.srv.set.hostname))
			s.flush()
		}
		return false
	}
	return true
}

// crashed logs a panic of the session and answers it with 421 rather than
// crash the server.
func (s *session) crashed(p any) {
	s.logger().Error("smtpd: panic in session", "panic", p, "stack", string(debug.Stack()))
	if len(s.out) > 0 {
		s.traceUnsent(0, errors.New("the server hit a bug"))
		s.out = s.out[:0]
	}
	s.send(reply{code: 421, enh: "4.3.0", text: s.srv.set.hostname + " Error: internal error, closing connection",
		why: "the server hit a bug in this session and hangs up; the client should retry later", rfc: "RFC 5321 §4.2.2 (421)"})
	s.flush()
}

// end releases what the session holds; it runs last, even after a panic.
// Every connection the server ends, whatever the reason, ends here, in a
// graceful close (Server.hangUp), unless the client closed first.
func (s *session) end() {
	defer s.srv.wg.Done()
	// Untracked first: a client that sees the close may connect again at
	// once, and must find its slot free under MaxConns.
	s.srv.untrack(s)
	s.srv.releaseIP(s.ip)
	s.dropChunks() // a message sent in chunks and never finished
	s.releaseReader()
	s.srv.hangUp(s.conn, s.tlsConn, !s.peerClosed && s.writeErr == nil)
	s.ended()
}

// reply returns the reply to a command line, or to the error that came
// instead of one. An error back means the connection is gone and nothing
// more can be said.
func (s *session) reply(line string, err error) (reply, error) {
	switch {
	case s.writeErr != nil:
		// The client cannot be answered: a line still in the read
		// buffer is not acted upon.
		return reply{}, s.writeErr
	case err == nil:
		return s.handle(line), nil
	case errors.Is(err, errLineTooLong):
		s.clientLine("<command line over 512 octets>")
		return replyLineTooLong, nil
	case errors.Is(err, errBareLF):
		verb, _ := parseCommand(line)
		s.clientLine(s.tracedCommand(line, verb) + "<LF>")
		return replyBareLF, nil
	case isTimeout(err):
		return s.timeoutReply(), nil
	}
	return reply{}, err
}

// errParked is readCommand's way of saying that the session is idle and
// waits in a goroutine of its own (see resume).
var errParked = errors.New("idle: waiting in a new goroutine")

// readCommand flushes the pending replies if the client has sent nothing more
// (so a pipelined batch gets its replies in one write, RFC 2920 §3.1), then
// reads the next command line within CommandTimeout. Between transactions,
// with nothing buffered, it returns errParked instead where the session can
// wait without a read buffer (see resume).
func (s *session) readCommand() (string, error) {
	deadline := s.capDeadline(time.Now().Add(s.srv.set.commandTimeout))
	s.conn.SetReadDeadline(deadline)
	batchStart := s.br.Buffered() == 0
	if batchStart {
		if err := s.flush(); err != nil {
			return "", err
		}
	}
	if s.state < stateMail {
		// Shutdown wakes idle sessions by moving their read deadline
		// to now. It sets its flag before it looks at ours, and we set
		// ours before we look at its flag, so one of us sees the other.
		// afterRead clears ours.
		s.idle.Store(true)
		if s.srv.shuttingDown() {
			s.idle.Store(false)
			return "", os.ErrDeadlineExceeded
		}
		if batchStart && s.canPark() {
			// A client may stay silent for minutes here: wait
			// without the read buffer.
			s.releaseReader()
			park, err := s.waitBriefly(deadline)
			if park {
				// Nor the reply buffer, nor this goroutine's
				// stack.
				s.out = nil
				return "", errParked
			}
			s.acquireReader()
			if err != nil {
				s.idle.Store(false)
				return "", err
			}
		}
	}
	line, err := s.readLine()
	s.afterRead(batchStart)
	return line, err
}

// parkAfter is how long a session between transactions waits for the next
// command on its own goroutine before it parks (see resume). A busy client
// nearby (a local relay, a test suite, a load generator) sends its next
// command within a millisecond or so, and parking it would cost a goroutine
// start and a thread wake-up on every command: about 8 µs of CPU, a fifth
// of a connect-EHLO-QUIT session. Clients farther away have round trips
// longer than this and park each time, at a cost that is small next to
// their pace. Longer waits would keep more sessions on their large stacks:
// 100 ms here gave 4.6 KiB per idle session in the benchmark, 20 ms 4.4.
const parkAfter = 20 * time.Millisecond

// waitBriefly waits up to parkAfter for input, before deadline, on this
// goroutine. It reports whether the client stayed silent, so that the
// session should park; the read deadline is deadline again on return.
func (s *session) waitBriefly(deadline time.Time) (park bool, err error) {
	brief := time.Now().Add(parkAfter)
	if !brief.Before(deadline) {
		return true, nil // resume waits out the little time left
	}
	s.conn.SetReadDeadline(brief)
	err = waitReadable(s.conn)
	s.conn.SetReadDeadline(deadline)
	if !isTimeout(err) {
		return false, err
	}
	// The brief wait is over, or Shutdown moved the deadline to now
	// before it was put back: its flag, read after, says which.
	if s.srv.shuttingDown() {
		return false, os.ErrDeadlineExceeded
	}
	return true, nil
}

// afterRead ends a command read: the session is no longer idle, and a line
// that came with more behind it is traced as a pipelined batch.
func (s *session) afterRead(batchStart bool) {
	s.idle.Store(false)
	if batchStart && s.br.Buffered() > 0 {
		s.tracePipelined()
	}
}

// canPark reports whether the session can wait for input in resume: on a
// plain socket (TLS keeps its own buffers and has input of its own).
func (s *session) canPark() bool {
	return s.tlsConn == nil && waitable(s.conn)
}

// readers holds the read buffers of sessions that are waiting between
// transactions; a session only holds one while it has input to read.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// releaseReader gives the session's empty read buffer back to the pool.
func (s *session) releaseReader() {
	if s.br == nil {
		return
	}
	s.br.Reset(nil)
	readers.Put(s.br)
	s.br = nil
}

func (s *session) acquireReader() {
	s.br = readers.Get().(*bufio.Reader)
	s.br.Reset(s)
}

// readLine reads one line, without its line ending. A bare LF ends a command
// line too (the README's Specification section). A line over maxCommandLine
// octets is read to its end and reported as errLineTooLong; the session stays
// in sync.
func (s *session) readLine() (string, error) {
	line, err := s.br.ReadSlice('\n')
	for err == bufio.ErrBufferFull {
		_, err = s.br.ReadSlice('\n')
		if err == nil {
			return "", errLineTooLong
		}
	}
	if err != nil {
		return "", err
	}
	if len(line) > maxCommandLine {
		return "", errLineTooLong
	}
	line = line[:len(line)-1]
	// A line ending in a bare LF, as plain nc sends them, is taken as a
	// line, and counted; StrictCRLF refuses it.
	s.lfOnly = !bytes.HasSuffix(line, []byte{'\r'})
	s.crlf = s.crlf || !s.lfOnly
	if s.lfOnly {
		s.srv.stats.bareLF.Add(1)
		if s.srv.set.strictCRLF {
			return string(line), errBareLF
		}
	}
	return string(bytes.TrimSuffix(line, []byte{'\r'})), nil
}

// tracePipelined notes, in the trace, a command that came with more lines
// behind it in the same read. Once an EHLO reply has offered PIPELINING,
// that is a pipelined batch (RFC 2920), whose replies go back together.
// Before (after HELO, or before EHLO, or even before the greeting) it is
// not: RFC 2920 §3.1 lets a client batch commands only once EHLO has shown
// the extension, and EHLO itself only as the last of a batch. The server
// answers such a batch in order all the same (the original project's
// "cat mail.txt | nc" demo sends one), and the trace says what it is.
func (s *session) tracePipelined() {
	if !s.srv.trace.enabled() {
		return
	}
	more, _ := s.br.Peek(s.br.Buffered())
	n := bytes.Count(more, []byte{'\n'})
	switch {
	case n == 0:
	case s.esmtp:
		s.event("pipelining: this command came with %s in one read (RFC 2920); their replies go back together", plural(int64(n), "more line"))
	default:
		s.event("not pipelining: this command came with %s in one read, before EHLO offered PIPELINING (perhaps before the greeting); "+
			"RFC 2920 §3.1 allows a batch only once EHLO has shown PIPELINING, with EHLO last; the server answers them in order anyway", plural(int64(n), "more line"))
	}
}

// hintCRLF says once per session, in the trace, that SMTP lines end with
// CR LF (RFC 5321 §2.3.8): the lesson for a class typing into plain nc.
func (s *session) hintCRLF() {
	if !s.hinted {
		s.hinted = true
		s.event("this client ends lines with a bare LF, but SMTP wants CR LF (RFC 5321 §2.3.8): accepted here; use nc -C or telnet")
	}
}

// handle dispatches one command line to the handler of its verb.
func (s *session) handle(line string) reply {
	verb, arg := parseCommand(line)
	s.clientLine(s.tracedCommand(line, verb))
	if s.lfOnly {
		s.hintCRLF()
	}
	s.srv.stats.countCommand(verb)
	if junkCommand(verb) {
		s.countJunk()
	}
	if s.srv.set.lmtp {
		if r, ok := s.lmtpCommand(verb, arg); ok {
			return r
		}
	}
	switch verb {
	case "HELO":
		return s.cmdHELO(arg)
	case "EHLO":
		return s.cmdEHLO(arg)
	case "MAIL":
		return s.cmdMAIL(arg)
	case "RCPT":
		return s.cmdRCPT(arg)
	case "DATA":
		return s.cmdDATA(arg)
	case "BDAT":
		return s.cmdBDAT(arg)
	case "RSET":
		return s.cmdRSET(arg)
	case "NOOP":
		return replyOK
	case "QUIT":
		return replyBye
	case "VRFY":
		return s.cmdVRFY(arg)
	case "HELP":
		return replyHelp
	case "STARTTLS":
		return s.cmdSTARTTLS(arg)
	case "AUTH":
		r := s.cmdAUTH(arg)
		s.afterAuthRefused = r.code != replyAuthOK.code
		return r
	case "EXPN", "ETRN", "TURN", "ATRN":
		return replyNotImplemented
	case "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT":
		// A web browser or a cross-protocol attack: nothing SMTP
		// can follow, so close (as chasquid does).
		return replyHTTP
	case "":
		return replyEmptyLine
	}
	return replyUnknownCommand
}

// tracedCommand returns a command line as the trace and the transcript show
// it, with what may be a secret hidden:
//   - after an AUTH that did not succeed, every line until the client sends
//     a command the server knows: a client that did not wait for the refusal
//     (538, 503, 504…) sends its credentials as if they were commands;
//   - an AUTH line's initial response, or all of it past the verb when no
//     known mechanism follows it (redactCommand);
//   - a line that is not a command, cut to its first octets and its length,
//     as chasquid logs them: it may be a password typed at the wrong prompt.
func (s *session) tracedCommand(line, verb string) string {
	known := isCommand(verb)
	switch {
	case s.afterAuthRefused && !known:
		return "<redacted>"
	case verb == "AUTH":
		return redactCommand(line)
	case !known:
		return cutLine(line)
	}
	s.afterAuthRefused = false
	return line
}

// isCommand reports whether verb is an SMTP command the server knows (those
// it counts one by one).
func isCommand(verb string) bool {
	return slices.Contains(countedVerbs[:], verb)
}

// shownOctets is how much of a line that is not a command the trace shows.
const shownOctets = 4

// cutLine returns the first octets of line and its length.
func cutLine(line string) string {
	if len(line) <= shownOctets {
		return line
	}
	return line[:shownOctets] + "… <" + strconv.Itoa(len(line)) + " octets>"
}

// maxJunkCommands is how many commands that make no progress (junkCommand) a
// session may send before each further one counts as an error toward
// MaxErrors; the count starts again when a message is accepted. A client
// that floods the server with them, as one that stalls would, is then
// closed after MaxErrors more. Postfix's smtpd_junk_command_limit is the
// same rule, with the same figure.
const maxJunkCommands = 100

// junkCommand reports whether verb is a command that does nothing towards
// delivering mail.
func junkCommand(verb string) bool {
	switch verb {
	case "NOOP", "RSET", "HELP", "VRFY":
		return true
	}
	return false
}

// countJunk counts a command that makes no progress, and past
// maxJunkCommands counts it as an error.
func (s *session) countJunk() {
	s.junk++
	if s.junk == maxJunkCommands+1 {
		s.event("over %d commands that do nothing (NOOP, RSET, HELP, VRFY) without a message: each one now counts as an error", maxJunkCommands)
	}
	if s.junk > maxJunkCommands {
		s.errors++
	}
}

// cmdHELO answers HELO (RFC 5321 §4.1.1.1): no extensions.
func (s *session) cmdHELO(arg string) reply {
	helo, err := parseHelo(arg)
	if err != nil {
		return replySyntaxHELO
	}
	if r, ok := s.fault(FaultHelo, helo); ok {
		return r
	}
	s.greeted(helo, false)
	return reply{code: 250, text: s.srv.set.hostname,
		why: "hello: plain SMTP, no extensions (EHLO would list them)", rfc: "RFC 5321 §4.1.1.1"}
}

// cmdEHLO answers EHLO with the extensions the server offers
// (RFC 5321 §4.1.1.1). SIZE shows the limit in force right now, which the
// management protocol can change.
func (s *session) cmdEHLO(arg string) reply {
	return s.extendedHello(arg, replySyntaxEHLO, replyEHLO)
}

// replyEHLO is the reply to EHLO, whose text helloText makes.
var replyEHLO = reply{code: 250,
	why: "hello: the lines after the first list the extensions the client may use", rfc: "RFC 5321 §4.1.1.1; RFC 2920, 1870, 6152, 2034, 6531, 3461, 3030"}

// extendedHello answers EHLO, or LMTP's LHLO: syntax when the argument is
// not a name, else hello with the extensions as its text.
func (s *session) extendedHello(arg string, syntax, hello reply) reply {
	helo, err := parseHelo(arg)
	if err != nil {
		return syntax
	}
	if r, ok := s.fault(FaultHelo, helo); ok {
		return r
	}
	s.greeted(helo, true)
	hello.text = s.helloText()
	return hello
}

// helloText is the text of the reply to EHLO (and LMTP's LHLO): the
// server's name, then the service extensions the session offers, one per
// line.
func (s *session) helloText() string {
	return s.srv.set.hostname + "\n" +
		"PIPELINING\n" +
		"SIZE " + strconv.FormatInt(s.srv.maxSize.Load(), 10) + "\n" +
		"8BITMIME\n" +
		"ENHANCEDSTATUSCODES\n" +
		"SMTPUTF8\n" +
		"DSN\n" +
		"CHUNKING\n" +
		"BINARYMIME\n" +
		"HELP" + s.securityKeywords()
}

// greeted records a HELO or EHLO, which also resets any transaction
// (RFC 5321 §4.1.4).
func (s *session) greeted(helo string, esmtp bool) {
	s.reset()
	s.helo, s.esmtp = helo, esmtp
	s.state = stateReady
}

// cmdMAIL starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) cmdMAIL(arg string) reply {
	switch {
	case s.state < stateReady:
		return replyNeedHELO
	case s.state > stateReady:
		return replyNestedMAIL
	case s.srv.set.requireAuth && s.authUser == "":
		return s.replyNeedAuth()
	}
	from, null, params, err := parseMail(arg, s.esmtp, s.srv.set.testMode)
	switch {
	case errors.Is(err, errUnknownParam):
		return replyUnknownParameter
	case errors.Is(err, errBadParam):
		return replyBadParameter
	case err != nil:
		return replySyntaxMAIL
	case !null && !from.ascii() && !params.smtputf8:
		return replyNeedSMTPUTF8
	case params.size > s.srv.maxSize.Load():
		// RFC 1870 §6.2: refuse at once what will not fit.
		return replyTooBig
	}
	subject := from.raw
	if null {
		subject = "<>"
	}
	if r, ok := s.fault(FaultMail, subject); ok {
		return r
	}
	s.from, s.nullFrom, s.params = from, null, params
	s.state = stateMail
	s.traceMailDSN(params)
	return replySenderOK
}

// cmdRCPT adds a recipient (RFC 5321 §4.1.1.3).
func (s *session) cmdRCPT(arg string) reply {
	switch {
	case s.state < stateReady:
		return replyNeedHELO
	case s.state < stateMail:
		return replyNeedMAIL
	case s.chunks != nil:
		return replyRcptAfterBDAT
	}
	to, params, err := parseRcpt(arg, s.esmtp, s.srv.set.testMode)
	switch {
	case errors.Is(err, errUnknownParam):
		return replyUnknownParameter
	case errors.Is(err, errBadParam):
		return replyBadParameter
	case errors.Is(err, errNullPath):
		return replyNullRecipient
	case err != nil:
		return replySyntaxRCPT
	case !to.ascii() && !s.params.smtputf8:
		return replyNeedSMTPUTF8
	case s.rcptSeen[to.key()]:
		// RFC 5321 does not forbid giving a recipient twice; one copy
		// is what the client wants, as Postfix's cleanup and Gmail
		// also decide.
		s.event("<%s> given twice: kept once in the envelope (one copy, once in an added To: and in access.log)", to.raw)
		s.recipientAgain(to)
		return replyRecipientAgain
	case len(s.rcpts) >= s.srv.set.maxRecipients:
		// RFC 5321 §4.5.3.1.10: 452, and the client sends the rest
		// in another transaction.
		return replyTooManyRcpts
	case !s.srv.isLocalDomain(to.domain):
		return replyDomainNotLocal
	}
	if r, ok := s.fault(FaultRcpt, to.raw); ok {
		return r
	}
	s.rcpts = append(s.rcpts, to)
	if s.rcptSeen == nil {
		s.rcptSeen = make(map[address]bool)
	}
	s.rcptSeen[to.key()] = true
	s.recipientAdded(params)
	s.state = stateRcpt
	s.traceRcptDSN(params)
	return replyRecipientOK
}

// cmdDATA receives the message and stores it (RFC 5321 §4.1.1.4).
func (s *session) cmdDATA(arg string) reply {
	if r, refused := s.chunkingRefusesDATA(); refused {
		return r
	}
	switch {
	case arg != "":
		return replyNoArgument
	case s.state < stateReady:
		return replyNeedHELO
	case s.state == stateReady:
		return replyNeedMAIL
	case s.state == stateMail:
		return replyNeedRCPT
	}
	defer s.reset()
	if r, ok := s.fault(FaultData, s.recipients()...); ok {
		return r
	}
	return s.receive(s.newMessage())
}

// newMessage describes the transaction's message before its data arrives.
func (s *session) newMessage() *Message {
	m := &Message{
		ID:           newQueueID(),
		Helo:         s.helo,
		ESMTP:        s.esmtp,
		RemoteAddr:   s.remote,
		BodyType:     s.params.body,
		SMTPUTF8:     s.params.smtputf8,
		DSN:          s.dsn(),
		LMTP:         s.srv.set.lmtp,
		Time:         time.Now(),
		TLS:          s.tlsState,
		AuthUser:     s.authUser,
		AuthzID:      s.authzID,
		AuthPassword: s.authPassword,
	}
	if !s.nullFrom {
		m.From = s.from.raw
	}
	for _, to := range s.rcpts {
		m.To = append(m.To, to.raw)
	}
	return m
}

// mailboxes returns the distinct mailboxes of the transaction's recipients.
func (s *session) mailboxes() []string {
	boxes := make([]string, 0, len(s.rcpts))
	seen := make(map[string]bool, len(s.rcpts))
	for _, to := range s.rcpts {
		box := mailboxName(to.local)
		if !seen[box] {
			seen[box] = true
			boxes = append(boxes, box)
		}
	}
	return boxes
}

// receive answers 354, reads the message data into a new delivery and
// commits it. Only a committed delivery earns 250 (RFC 5321 §6.1).
func (s *session) receive(m *Message) reply {
	var in incoming
	if r, ok := s.openMessage(m, &in); !ok {
		return r
	}
	// The 354 goes out when the message data is first waited for (Read).
	s.send(replyStartData)
	s.inData = true
	var err error
	m.Size, err = s.readData(in.data)
	s.inData = false
	// The end-of-data line was read unless the connection failed: only
	// then is it traced.
	ended := err == nil || errors.Is(err, errMessageTooLarge) || errors.As(err, new(*sinkError))
	if in.traced != nil {
		in.traced.end(m.Size, ended)
	}
	if s.log != nil { // formatted, an allocation, only for a transcript
		s.note(KindClient, fmt.Sprintf("<message data: %d octets>", m.Size))
		if ended {
			s.note(KindClient, ".")
		}
	}
	return s.finishMessage(&in, m, err)
}

// readData reads the message data into w. A client that has ended every
// command line with a bare LF may end the data with a lone dot and a bare
// LF too (see readDataLF); the trace says so.
func (s *session) readData(w io.Writer) (int64, error) {
	if s.crlf {
		return readData(s.br, w, s.srv.maxSize.Load())
	}
	size, lfEnd, err := readDataLF(s.br, w, s.srv.maxSize.Load())
	if lfEnd {
		s.event("the data ended at a lone dot with a bare LF: accepted from a client that has ended every line with a bare LF, as plain nc does; SMTP wants <CR><LF>.<CR><LF> (RFC 5321 §4.1.1.4), and once a client ends a line with CR LF nothing else ends its data, which keeps SMTP smuggling out")
	}
	return size, err
}

// filter runs the content filter from the spool into the delivery. It
// returns the reply to send instead of storing, and false, when the
// message must not be stored.
func (s *session) filter(f Filter, m *Message, sp *spool, d *delivery) (reply, bool) {
	start := time.Now()
	in, err := sp.reader()
	if err == nil {
		err = s.srv.runFilter(f, m, in, d)
	}
	var rejection *Rejection
	switch {
	case err == nil:
		s.event("content filter accepted the message in %v", time.Since(start).Round(time.Millisecond))
		return reply{}, true
	case errors.Is(err, errFilterOutputTooLarge):
		s.srv.stats.rejected.Add(1)
		s.event("content filter output over the size limit")
		return replyFilterTooBig, false
	case errors.As(err, &rejection):
		s.srv.stats.rejected.Add(1)
		s.event("content filter rejected the message: %s", rejection.Reason)
		return replyFilterRejected(rejection.Reason), false
	}
	s.srv.stats.failed.Add(1)
	s.event("content filter failed: %v", err)
	s.logger().Error("smtpd: content filter failed", "queue_id", m.ID, "err", err)
	return replyFilterFailed, false
}

// dataFailure returns the reply to a DATA whose data could not be stored.
func (s *session) dataFailure(m *Message, err error) reply {
	var sinkErr *sinkError
	switch {
	case errors.Is(err, errMessageTooLarge):
		s.srv.stats.rejected.Add(1)
		return replyTooBig
	case errors.As(err, &sinkErr):
		s.srv.stats.failed.Add(1)
		s.logger().Error("smtpd: delivery failed", "queue_id", m.ID, "err", err)
		return replyLocalError
	case isTimeout(err) && s.writeErr == nil:
		return s.timeoutReply()
	}
	s.event("disconnected during message data: %v", traceReason(err))
	return replyHangUp
}

// cmdRSET aborts the transaction (RFC 5321 §4.1.1.5).
func (s *session) cmdRSET(arg string) reply {
	if arg != "" {
		return replyNoArgument
	}
	s.reset()
	return replyOK
}

// cmdVRFY never confirms an address (RFC 5321 §3.5.3 allows 252).
func (s *session) cmdVRFY(arg string) reply {
	if arg == "" {
		return replySyntaxVRFY
	}
	return replyVRFY
}

// reset clears the mail transaction and nothing else (RFC 5321 §4.1.1.5).
func (s *session) reset() {
	if s.state > stateReady {
		s.state = stateReady
	}
	s.from, s.nullFrom, s.params = address{}, false, mailParams{}
	s.rcpts = s.rcpts[:0]
	s.rcptParams = s.rcptParams[:0]
	s.rcptReplies = s.rcptReplies[:0]
	s.dropChunks()
	s.rcptSeen = nil // not kept, cleared, while the session idles
}

// maxPendingOutput is how many octets of replies a session holds back, to
// send a pipelined batch's replies together (RFC 2920 §3.1), before it sends
// them anyway. A client that pipelines without reading its replies then
// meets TCP's flow control: the write waits until the client reads, and
// meanwhile nothing more is read from it. The replies never pile up in the
// server.
const maxPendingOutput = 4096

// send queues a reply, and sends the queue once it is over maxPendingOutput.
func (s *session) send(r reply) {
	if r.code == 0 {
		return
	}
	s.srv.trace.server(s.id, r)
	s.log.reply(r)
	s.srv.stats.countReply(r.code)
	s.out = r.appendTo(s.out)
	if len(s.out) >= maxPendingOutput {
		s.flush() // an error ends the session at its next read
	}
}

// flush writes the queued replies. A client that does not read them gets
// CommandTimeout to start; the write deadline is set here, apart from the
// read deadline, so that a reply after a read timeout (421) still goes out.
// Once a write has failed nothing more is sent, and the error is returned
// again: the trace marks every reply that did not go out.
func (s *session) flush() error {
	if s.writeErr != nil {
		if len(s.out) > 0 {
			s.traceUnsent(0, s.writeErr)
			s.out = s.out[:0]
		}
		return s.writeErr
	}
	if len(s.out) == 0 {
		return nil
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.srv.set.commandTimeout))
	n, err := s.stream().Write(s.out)
	s.srv.stats.bytesOut.Add(uint64(n))
	if err != nil {
		s.writeErr = err
		s.traceUnsent(n, err)
	}
	if cap(s.out) > readBufferSize {
		s.out = nil // do not keep a large batch's buffer while idle
	} else {
		s.out = s.out[:0]
	}
	return err
}

// traceUnsent says, in the trace and the transcript, that the replies queued
// in s.out past its first written octets did not reach the client whole: the
// trace showed them when they were queued.
func (s *session) traceUnsent(written int, err error) {
	lost := 0
	for start := 0; start < len(s.out); {
		end := start + bytes.IndexByte(s.out[start:], '\n') + 1
		// The last line of a reply has a space after its code.
		if end > written && end-start > 3 && s.out[start+3] == ' ' {
			lost++
		}
		start = end
	}
	if lost == 0 {
		return
	}
	what := "the reply above was"
	if lost > 1 {
		what = fmt.Sprintf("the %d replies above were", lost)
	}
	s.event("%s not sent: %v", what, traceReason(err))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// traceReason says in a few words why a connection ended.
func traceReason(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "client closed the connection"
	}
	if errors.Is(err, net.ErrClosed) {
		return "server closed the connection"
	}
	return err.Error()
}

// event traces, and records, something that is not a protocol line.
func (s *session) event(format string, args ...any) {
	if s.log == nil && !s.srv.trace.enabled() {
		return
	}
	text := fmt.Sprintf(format, args...)
	s.srv.trace.event(s.id, "%s", text)
	s.note(KindEvent, text)
}

// clientLine traces, and records, a line the client sent (redacted by the
// caller where it holds a secret).
func (s *session) clientLine(line string) {
	s.srv.trace.client(s.id, line)
	s.note(KindClient, line)
}

// note adds a line to the session's log when it keeps one.
func (s *session) note(kind LineKind, text string) {
	s.log.add(kind, text)
}

// logger returns the server's logger with the session's attributes.
func (s *session) logger() *slog.Logger {
	return s.srv.log.With("session", s.id, "remote", s.remote)
}

// bareLFDetector notes whether what is written to it (message data in its
// wire form) holds an LF not preceded by a CR.
type bareLFDetector struct {
	last  byte // the last byte of the previous write
	found bool
}

func (d *bareLFDetector) Write(p []byte) (int, error) {
	for i := 0; !d.found && i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		prev := d.last
		if i > 0 {
			prev = p[i-1]
		}
		d.found = prev != '\r'
		i++
	}
	if len(p) > 0 {
		d.last = p[len(p)-1]
	}
	return len(p), nil
}
