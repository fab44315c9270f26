package smtpd

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SessionLog is the record the server keeps of one session when
// Config.SessionStarted or Config.SessionEnded is set: the client's
// address, the dialogue with each command's reply, the messages the
// session delivered, and how it ended. The session adds to it as it goes
// on; Record returns a copy of it as it stands, at any time, from any
// goroutine.
//
// A client that has seen a reply can rely on the log holding it, and, when
// the reply ended the session (QUIT's 221, a 421), on the log saying so: a
// test that sent mail and got its answer finds the whole session there.
type SessionLog struct {
	id    string
	start time.Time

	mu       sync.Mutex
	remote   net.Addr
	lines    []TranscriptLine
	omitted  int        // lines summarized away after the first logHead (see trim)
	mails    []int      // the numbers of the lines of the client's MAIL commands
	messages []*Message // the first maxLoggedMessages the session delivered
	dropped  bool       // a fault rule dropped the connection
	end      SessionEnd
	ended    time.Time
}

// maxLoggedMessages bounds the messages a SessionLog lists: a client may
// send any number of messages in one session.
const maxLoggedMessages = 1000

// The bound of a session's log: once it has maxLogLines lines, all but its
// first logHead lines (how the session began) and its last logTail lines
// (which hold the whole of a transaction with up to 100 recipients) are
// replaced by one line saying how many were left out. A client that sends
// two million NOOPs costs a log of 500 lines, not 600 MiB.
const (
	maxLogLines = 500
	logHead     = 50
	logTail     = 300
)

// SessionRecord is a copy of a SessionLog, taken by SessionLog.Record.
type SessionRecord struct {
	// ID is the session's number, as the trace and the logs show it.
	ID string
	// RemoteAddr is the client's address: behind a trusted proxy
	// (Config.ProxyFrom), the one its PROXY header gave.
	RemoteAddr net.Addr
	// Start is when the server accepted the connection.
	Start time.Time
	// End says how the session ended; SessionOpen while it goes on.
	End SessionEnd
	// EndTime is when the session ended, or sent the reply that ended it;
	// zero while it goes on.
	EndTime time.Time
	// Exchanges are the server's replies, each with the client line it
	// answered, in order.
	Exchanges []Exchange
	// Transcript is the whole dialogue: every line both ways and the
	// session's events, as Message.Transcript shows them.
	Transcript []TranscriptLine
	// Messages are the messages the session delivered, in order (at most
	// the first 1000).
	Messages []*Message
}

// Exchange is a reply of the server and the client line it answered.
type Exchange struct {
	// Command is the client's line, redacted as in the trace (AUTH
	// credentials are "<redacted>"). The reply to message data answers
	// the final "."; the greeting, and a 421 sent when a timeout or a
	// shutdown ends the session, answer nothing: their Command is "".
	Command string
	// Code is the reply code, and Reply the whole reply as sent, its
	// lines (each with the code) joined with "\n".
	Code  int
	Reply string
	// Time is when the server sent the reply.
	Time time.Time
}

// SessionEnd says how a session ended.
type SessionEnd uint8

const (
	// SessionOpen: the session goes on.
	SessionOpen SessionEnd = iota
	// EndQuit: the client sent QUIT and the server answered 221.
	EndQuit
	// EndReply: the server ended the session with a reply, the last
	// Exchange: 421 for a timeout, too many errors, a shutdown, a fault
	// rule or too many connections from one address, 554 for a client
	// that spoke before the greeting.
	EndReply
	// EndDisconnected: the connection ended without QUIT and without a
	// reply that ended it: the client closed it, or it broke.
	EndDisconnected
	// EndDropped: a fault rule dropped the connection (FaultRule.Drop).
	EndDropped
	// EndServerClosed: Server.Close closed the connection.
	EndServerClosed
)

var sessionEndNames = [...]string{"open", "quit", "reply", "disconnected", "dropped", "server closed"}

func (e SessionEnd) String() string {
	if int(e) < len(sessionEndNames) {
		return sessionEndNames[e]
	}
	return "SessionEnd(" + strconv.Itoa(int(e)) + ")"
}

// Record returns a copy of the log as it stands.
func (l *SessionLog) Record() SessionRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return SessionRecord{
		ID:         l.id,
		RemoteAddr: l.remote,
		Start:      l.start,
		End:        l.end,
		EndTime:    l.ended,
		Exchanges:  exchanges(l.lines),
		Transcript: append([]TranscriptLine(nil), l.lines...),
		Messages:   append([]*Message(nil), l.messages...),
	}
}

// exchanges pairs each reply in a transcript with the client line before
// it that no reply has answered yet. A reply ends at its line with a space
// after the code (RFC 5321 §4.2.1).
func exchanges(lines []TranscriptLine) []Exchange {
	var (
		list    []Exchange
		command string   // the last client line not answered yet
		reply   []string // the lines of a multi-line reply so far
	)
	for _, l := range lines {
		switch l.Kind {
		case KindClient:
			command = l.Text
		case KindServer:
			reply = append(reply, l.Text)
			if len(l.Text) > 3 && l.Text[3] == '-' {
				continue
			}
			code, _ := strconv.Atoi(reply[0][:min(3, len(reply[0]))])
			list = append(list, Exchange{Command: command, Code: code, Reply: strings.Join(reply, "\n"), Time: l.Time})
			command, reply = "", nil
		}
	}
	return list
}

// newSessionLog returns the log of a new session, or nil when the server
// keeps none: when neither Config.Delivered (for Message.Transcript) nor
// the session hooks need one.
func (srv *Server) newSessionLog(id string, remote net.Addr) *SessionLog {
	set := &srv.set
	if set.delivered == nil && set.sessionStarted == nil && set.sessionEnded == nil && !srv.web.keepsTranscripts() {
		return nil
	}
	return &SessionLog{id: id, start: time.Now(), remote: remote}
}

// add appends a line. The methods that change a log do nothing on a nil
// log, the log of a session that keeps none.
func (l *SessionLog) add(kind LineKind, text string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if verb, _ := parseCommand(text); kind == KindClient && verb == "MAIL" {
		l.mails = append(l.mails, l.count())
	}
	l.append(TranscriptLine{Time: time.Now(), Kind: kind, Text: text})
}

// append adds a line within the bound, summarizing the middle of the log
// when it is full.
func (l *SessionLog) append(line TranscriptLine) {
	if len(l.lines) >= maxLogLines {
		l.trim()
	}
	l.lines = append(l.lines, line)
}

// trim replaces the lines between the first logHead and the last logTail
// with one line that counts all the lines left out so far. Lines are
// numbered from the session's start, omitted ones included (count), so
// that the numbers messages and MAIL commands keep stay true.
func (l *SessionLog) trim() {
	tail := len(l.lines) - logTail
	from := logHead
	if l.omitted > 0 {
		from++ // the summary line of the last trim
	}
	l.omitted += tail - from
	summary := TranscriptLine{Time: l.lines[tail-1].Time, Kind: KindEvent, Text: fmt.Sprintf("… %d lines omitted", l.omitted)}
	// Record and transcript hand out copies: the array can be reused.
	l.lines = append(append(l.lines[:logHead], summary), l.lines[tail:]...)
	// MAIL commands that were left out no longer end a transcript.
	l.mails = slices.DeleteFunc(l.mails, func(n int) bool { return n >= logHead && n < logHead+l.omitted })
}

// count returns the number of lines the session has logged, the omitted
// ones included: the number the next line gets.
func (l *SessionLog) count() int {
	if l.omitted == 0 {
		return len(l.lines)
	}
	return len(l.lines) - 1 + l.omitted
}

// upTo returns how many of l.lines hold the lines numbered below n: the
// summary line stands for the omitted ones.
func (l *SessionLog) upTo(n int) int {
	switch {
	case l.omitted == 0 || n <= logHead:
		return n
	case n < logHead+l.omitted:
		return logHead + 1
	}
	return n - l.omitted + 1
}

// reply appends the lines of a reply. A reply that closes the connection
// (and any 421, RFC 5321 §3.8) ends the session, before the client can
// see it.
func (l *SessionLog) reply(r reply) {
	if l == nil {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(r.String(), "\n") {
		l.append(TranscriptLine{Time: now, Kind: KindServer, Text: line})
	}
	if l.end == SessionOpen && (r.close || r.code == 421) {
		l.end, l.ended = EndReply, now
		if r.code == 221 {
			l.end = EndQuit
		}
	}
}

// delivered adds a message the session stored; from then on the message's
// transcript is a view of the log (see Message.Transcript).
func (l *SessionLog) delivered(m *Message) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m.log, m.logEnd = l, l.count()
	if len(l.messages) < maxLoggedMessages {
		l.messages = append(l.messages, m)
	}
}

// drop notes that a fault rule drops the connection.
func (l *SessionLog) drop() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropped = true
}

// finish notes the end of the session, unless a reply ended it already;
// closed says whether Server.Close is closing the connections.
func (l *SessionLog) finish(closed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.end != SessionOpen {
		return
	}
	switch {
	case l.dropped:
		l.end = EndDropped
	case closed:
		l.end = EndServerClosed
	default:
		l.end = EndDisconnected
	}
	l.ended = time.Now()
}

// transcript returns the lines from the start up to the first MAIL command
// numbered from or after, or all of them.
func (l *SessionLog) transcript(from int) []TranscriptLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	end := l.count()
	for _, n := range l.mails {
		if n >= from {
			end = n
			break
		}
	}
	return append([]TranscriptLine(nil), l.lines[:l.upTo(end)]...)
}

// started hands the session's log to Config.SessionStarted, once the
// client's address is known (after a PROXY header) and before the first
// reply.
func (s *session) started() {
	if s.log == nil {
		return
	}
	s.log.mu.Lock()
	s.log.remote = s.remote
	s.log.mu.Unlock()
	if f := s.srv.set.sessionStarted; f != nil {
		f(s.log)
	}
}

// ended completes the session's log and hands it to Config.SessionEnded.
func (s *session) ended() {
	if s.log == nil {
		return
	}
	s.log.finish(s.srv.closing.Load())
	if f := s.srv.set.sessionEnded; f != nil {
		f(s.log)
	}
}
