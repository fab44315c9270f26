package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// maxHandshakeTime bounds a TLS handshake (STARTTLS or implicit TLS), or
// CommandTimeout if that is shorter: a client that opens the port and says
// nothing must not hold a session for the five minutes a command may take.
const maxHandshakeTime = 30 * time.Second

// serverTLSConfig returns the clone of the user's TLS configuration that the
// server uses: at least TLS 1.2 (RFC 8314 §4.1 and RFC 8996 retire 1.0 and
// 1.1), and no session tickets unless asked for (see
// Config.TLSSessionTickets). The user's Config stays as given.
func serverTLSConfig(c *tls.Config, tickets bool) (*tls.Config, error) {
	if len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil {
		return nil, errors.New("smtpd: Config.TLSConfig has no certificate")
	}
	c = c.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	if !tickets {
		c.SessionTicketsDisabled = true
	}
	return c, nil
}

// stream returns what the session reads and writes: the TLS connection once
// TLS is on, the plain connection before. s.conn itself stays the plain
// connection, because other goroutines (Shutdown, Close) use it: a deadline
// or a Close on it reaches the TLS connection too.
func (s *session) stream() net.Conn {
	if s.tlsConn != nil {
		return s.tlsConn
	}
	return s.conn
}

// handshake starts TLS as the server and waits for the handshake to end.
// On failure the connection is unusable and the session must end without a
// word: a plain-text reply would only be more garbage to a TLS client.
func (s *session) handshake() error {
	tc := tls.Server(s.conn, s.srv.set.tlsConfig)
	timeout := min(s.srv.set.commandTimeout, maxHandshakeTime)
	deadline := s.capDeadline(time.Now().Add(timeout))
	s.conn.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(s.srv.ctx, deadline)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.event("TLS handshake failed: %v", traceReason(err))
		return err
	}
	s.conn.SetDeadline(time.Time{})
	s.tlsConn = tc
	st := tc.ConnectionState()
	s.tlsState = &st
	// The read buffer is drained: whatever the client sent in plain text
	// after STARTTLS was discarded before the handshake (see cmdSTARTTLS).
	s.br.Reset(s)
	s.event("TLS started: %s, %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	return nil
}

// cmdSTARTTLS starts TLS on the connection (RFC 3207).
func (s *session) cmdSTARTTLS(arg string) reply {
	switch {
	case s.srv.set.tlsConfig == nil:
		return replyNotImplemented
	case s.tlsConn != nil:
		return replyTLSActive
	case arg != "":
		return replyNoArgument
	case s.state < stateReady:
		return replyNeedHELO
	case s.state > stateReady:
		// Postfix does the same: a transaction cannot straddle the
		// start of TLS, whose purpose is to protect all of it.
		return replyTLSInTransaction
	}
	// CVE-2011-0411 and its many siblings: commands the client wrote
	// after STARTTLS in the same packet were read in plain text, where
	// anyone on the path could have put them, and must not be executed
	// as if they came over TLS. RFC 3207 §4.1: the client must wait for
	// the 220 before it starts the handshake, so nothing legitimate can be
	// here.
	if n := s.br.Buffered(); n > 0 {
		s.br.Discard(n)
		s.event("discarded %s sent after STARTTLS before TLS began", plural(int64(n), "octet"))
		s.logger().Warn("smtpd: discarded input pipelined after STARTTLS", "octets", n)
	}
	s.send(replyReadyTLS)
	if err := s.flush(); err != nil {
		return replyHangUp
	}
	if err := s.handshake(); err != nil {
		return replyHangUp
	}
	// RFC 3207 §4.2: the server must discard any knowledge obtained from
	// the client before TLS, the EHLO argument included; the client must
	// say EHLO again. So must an AUTH be redone (RFC 4954 §4).
	s.reset()
	s.helo, s.esmtp = "", false
	s.state = stateGreeted
	s.authUser = ""
	return reply{} // nothing to say: the client speaks next
}

// offersAUTH reports whether AUTH may be used on this connection now.
func (s *session) offersAUTH() bool {
	set := &s.srv.set
	return set.testMode || set.authenticate != nil && (s.tlsConn != nil || set.allowInsecureAuth)
}

// securityKeywords returns the EHLO keywords of STARTTLS and AUTH, each on a
// line of its own, as they apply to the connection now.
func (s *session) securityKeywords() string {
	var kw string
	if s.srv.set.tlsConfig != nil && s.tlsConn == nil {
		kw += "\nSTARTTLS"
	}
	if s.offersAUTH() {
		kw += "\nAUTH PLAIN LOGIN"
	}
	return kw
}
