package smtpd

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

// admit runs what comes before the greeting, in the session's goroutine so
// that no client can stall the accept loop: the PROXY header from a trusted
// proxy, the per-address limit, the implicit TLS handshake and, with
// GreetDelay, the early talker check. When the client is not admitted it
// returns the reply to send before closing (none when nothing sensible can
// be said) and false.
func (s *session) admit() (reply, bool) {
	if s.fromTrustedProxy() {
		if err := s.readProxy(); err != nil {
			s.event("bad PROXY header: %v", traceReason(err))
			s.logger().Warn("smtpd: bad PROXY header from a trusted proxy", "err", err)
			return replyHangUp, false
		}
	}
	if !s.claimIP() {
		s.event("refused: over %d sessions from %s", s.srv.set.maxConnsPerIP, remoteIP(s.remote))
		if s.implicitTLS {
			return replyHangUp, false // see Server.refuse
		}
		return replyTooManyFromIP(s.srv.set.hostname), false
	}
	if s.implicitTLS {
		if err := s.handshake(); err != nil {
			return replyHangUp, false
		}
	}
	if s.srv.set.greetDelay == 0 {
		return reply{}, true
	}
	early, err := s.earlyTalker()
	switch {
	case err == errShutdownBeforeGreeting:
		s.event("refused: the server is shutting down")
		return replyShuttingDown(s.srv.set.hostname), false
	case err != nil:
		s.event("disconnected before the greeting: %v", traceReason(err))
		return replyHangUp, false
	case early:
		s.event("refused: the client spoke before the greeting")
		return replyEarlyTalker(s.srv.set.hostname), false
	}
	return reply{}, true
}

// earlyTalker waits GreetDelay and reports whether the client sent something
// meanwhile. RFC 5321 §4.3.1 has the client wait for the 220 greeting, and
// PIPELINING (RFC 2920 §3.1) only lets it batch commands once EHLO has
// shown the extension, so a patient MTA is silent here; spam software that
// blasts its commands without listening is not. Without GreetDelay nobody
// is refused for this: a client that talks first (cat mail.txt | nc) is
// served, its lines taken as one pipelined batch.
//
// The wait counts as idle, so that Shutdown ends it at once (see
// readCommand for the two flags), and then the client is told so.
func (s *session) earlyTalker() (bool, error) {
	if s.br.Buffered() > 0 {
		return true, nil // e.g. commands right behind a PROXY header
	}
	s.conn.SetReadDeadline(s.capDeadline(time.Now().Add(s.srv.set.greetDelay)))
	s.idle.Store(true)
	defer s.idle.Store(false)
	if s.srv.shuttingDown() {
		return false, errShutdownBeforeGreeting
	}
	_, err := s.br.Peek(1)
	switch {
	case err == nil:
		return true, nil
	case isTimeout(err) && s.srv.shuttingDown():
		return false, errShutdownBeforeGreeting
	case isTimeout(err):
		return false, nil // silent, as it should be
	}
	return false, err
}

// errShutdownBeforeGreeting is earlyTalker's way of saying that Shutdown
// began while it waited.
var errShutdownBeforeGreeting = errors.New("shutting down before the greeting")

// capDeadline returns t, or the end of the session if that comes first:
// every read and handshake of a session is bounded by SessionTimeout, so a
// client trickling data just fast enough to beat the per-read timeouts is
// still stopped.
func (s *session) capDeadline(t time.Time) time.Time {
	if t.After(s.deadline) {
		return s.deadline
	}
	return t
}

// timeoutReply is the reply to a read that timed out: the server is
// shutting down, the session is over its time, or the client was idle. A
// client that did not take the replies within CommandTimeout (the write
// timed out) gets none.
func (s *session) timeoutReply() reply {
	host := s.srv.set.hostname
	switch {
	case s.writeErr != nil:
		return replyHangUp
	case s.srv.closing.Load():
		return replyHangUp // Close drops connections without a goodbye
	case s.srv.shuttingDown():
		return replyShuttingDown(host)
	case !time.Now().Before(s.deadline):
		return replySessionTimeout(host)
	}
	return replyIdleTimeout(host)
}

// claimIP counts the session against MaxConnsPerIP and reports whether it
// is within the limit. Loopback clients are not counted unless
// MaxConnsPerIP was set, and nobody is with MaxConnsPerIP -1. Addresses
// that are not IP (a net.Pipe in tests, a Unix socket) are not limited.
func (s *session) claimIP() bool {
	ip := remoteIP(s.remote)
	if !ip.IsValid() || s.srv.set.maxConnsPerIP == 0 || ip.IsLoopback() && !s.srv.set.limitLoopback {
		return true
	}
	srv := s.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.perIP[ip] >= srv.set.maxConnsPerIP {
		return false
	}
	srv.perIP[ip]++
	s.ip = ip
	return true
}

// releaseIP gives back what claimIP counted; an invalid ip is ignored.
func (srv *Server) releaseIP(ip netip.Addr) {
	if !ip.IsValid() {
		return
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.perIP[ip]--; srv.perIP[ip] <= 0 {
		delete(srv.perIP, ip)
	}
}

// remoteIP returns the IP address of a (TCP) remote address, IPv4-mapped
// IPv6 addresses unmapped, or the invalid Addr.
func remoteIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
