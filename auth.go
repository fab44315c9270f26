package smtpd

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"
)

// ErrAuthFailed is what a Config.Authenticate function returns (or wraps)
// for a user name and password that do not match.
var ErrAuthFailed = errors.New("smtpd: authentication failed")

// Errors of a SASL exchange that the session answers with their own replies.
var (
	errAuthCancelled = errors.New("authentication cancelled by the client")
	errBadBase64     = errors.New("response is not base64")
	errSASLRounds    = errors.New("too many SASL rounds")
	errAuthBusy      = errors.New("no password check free in time")
)

// maxSASLRounds bounds the challenges of one AUTH command. PLAIN needs at
// most one, LOGIN two; the bound is a guard against a mechanism that never
// ends.
const maxSASLRounds = 4

// cmdAUTH authenticates the client with SASL PLAIN (RFC 4616) or LOGIN
// (draft-murchison-sasl-login), as RFC 4954 describes.
func (s *session) cmdAUTH(arg string) reply {
	switch {
	case s.srv.set.authenticate == nil && !s.srv.set.testMode:
		return replyNotImplemented
	case s.state < stateReady:
		return replyNeedHELO
	case !s.esmtp:
		return replyAuthNeedsEHLO
	case !s.offersAUTH():
		// RFC 4954 §4 and §6: only over TLS, unless told otherwise.
		return replyEncryptionRequired
	case s.authUser != "":
		return replyAlreadyAuthenticated // RFC 4954 §4
	case s.state > stateReady:
		return replyAuthInTransaction // RFC 4954 §4
	}
	mech, ir, err := parseAuthArg(arg)
	switch {
	case errors.Is(err, errBadBase64):
		return replyBadBase64
	case err != nil:
		return replySyntaxAUTH
	}
	var (
		user, authz string
		backendErr  error
	)
	check := func(identity, name, password string) error {
		// RFC 4616 §2: an authorization identity other than the user's
		// own means acting for someone else, which only TestMode allows
		// (and records, for tests of clients that do it).
		if identity != "" && identity != name && !s.srv.set.testMode {
			return ErrAuthFailed
		}
		ctx, cancel := context.WithTimeout(s.srv.ctx, s.srv.set.commandTimeout)
		defer cancel()
		err := s.authenticate(ctx, name, password)
		switch {
		case err == nil:
			user, authz = name, identity
		case !errors.Is(err, ErrAuthFailed):
			backendErr = err
		}
		return err
	}
	server := newSASLServer(mech, check)
	if server == nil {
		return replyUnknownMechanism
	}
	var connErr error // the connection failed during the exchange
	err = saslExchange(server, ir, func(challenge []byte) (string, error) {
		line, err := s.authChallenge(challenge)
		if err != nil && !errors.Is(err, errLineTooLong) {
			connErr = err
		}
		return line, err
	})
	switch {
	case err == nil && user != "":
		if r, ok := s.fault(FaultAuth, user); ok {
			return r
		}
		s.authUser, s.authzID = user, authz
		if authz != "" && authz != user {
			s.event("authenticated as %s, acting for %s", visible(user), visible(authz))
		} else {
			s.event("authenticated as %s", visible(user))
		}
		return replyAuthOK
	case errors.Is(err, errAuthCancelled):
		return replyAuthCancelled
	case errors.Is(err, errBadBase64):
		return replyBadBase64
	case errors.Is(err, errLineTooLong):
		return replyLineTooLong
	case connErr != nil && isTimeout(connErr):
		return s.timeoutReply()
	case connErr != nil:
		return replyHangUp
	case errors.Is(backendErr, errAuthBusy):
		s.event("no password check free within the command timeout")
		s.logger().Warn("smtpd: AUTH refused: too many password checks at once", "max", s.srv.set.maxAuthChecks)
		return replyAuthTemporary
	case backendErr != nil:
		s.logger().Error("smtpd: authentication backend failed", "err", backendErr)
		return replyAuthTemporary
	}
	return s.authFailed(mech)
}

// authenticate checks credentials with Config.Authenticate, once the
// server's authGate lets it; in TestMode it records them, and accepts any
// when there is no Authenticate. Waiting ends with ctx, and then
// authenticate returns errAuthBusy.
func (s *session) authenticate(ctx context.Context, user, password string) error {
	set := &s.srv.set
	if set.testMode {
		s.authPassword = password
		if set.authenticate == nil {
			return nil
		}
	}
	ip := remoteIP(s.remote)
	queued := func() { s.event("waiting for a password check: %d run at once", set.maxAuthChecks) }
	if err := s.srv.authGate.acquire(ctx, ip, queued); err != nil {
		return err
	}
	defer s.srv.authGate.release(ip)
	return set.authenticate(ctx, user, password)
}

// authChallenge sends a 334 challenge and reads the client's response line,
// which is traced as <redacted> whatever it holds.
func (s *session) authChallenge(challenge []byte) (string, error) {
	// RFC 4954 §4: "334" SP base64 challenge, and no enhanced code,
	// which would be taken for part of the challenge.
	s.send(reply{code: 334, text: base64.StdEncoding.EncodeToString(challenge),
		why: "the server's challenge, in base64; the client answers with one line of base64", rfc: "RFC 4954 §4"})
	s.conn.SetReadDeadline(s.capDeadline(time.Now().Add(s.srv.set.commandTimeout)))
	if err := s.flush(); err != nil {
		return "", err
	}
	line, err := s.readLine()
	if err == nil || errors.Is(err, errLineTooLong) {
		s.clientLine("<redacted>")
	}
	return line, err
}

// authFailed counts a failed attempt and answers it, after
// AuthFailureDelay so that guessing passwords is slow. The last allowed
// failure closes the session. The user name is not logged: people type
// their password into it.
func (s *session) authFailed(mech string) reply {
	s.authFailures++
	s.event("authentication failed (%s), %d of %d", mech, s.authFailures, s.srv.set.maxAuthFailures)
	s.logger().Warn("smtpd: authentication failed", "mechanism", mech, "failures", s.authFailures)
	t := time.NewTimer(s.srv.set.authFailureDelay)
	select {
	case <-t.C:
	case <-s.srv.ctx.Done(): // Close
		t.Stop()
	}
	if s.authFailures >= s.srv.set.maxAuthFailures {
		return replyTooManyAuthFailures(s.srv.set.hostname)
	}
	return replyAuthFailed
}

// replyNeedAuth refuses MAIL under RequireAuth, saying what the client must
// do first.
func (s *session) replyNeedAuth() reply {
	if !s.offersAUTH() && s.srv.set.tlsConfig != nil {
		return replyNeedSTARTTLS
	}
	return replyAuthRequired
}

// parseAuthArg parses the argument of AUTH (RFC 4954 §4):
// mechanism [SP initial-response], where an initial response of "=" is an
// empty one. ir is nil when there is none.
func parseAuthArg(arg string) (mech string, ir []byte, err error) {
	mech, resp, hasIR := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	if mech == "" || strings.ContainsAny(resp, " \t") {
		return "", nil, errSyntax
	}
	if !hasIR {
		return mech, nil, nil
	}
	if resp == "*" {
		// "*" cancels a response to a challenge, not the command.
		return "", nil, errSyntax
	}
	ir, err = decodeSASL(resp)
	return mech, ir, err
}

// decodeSASL decodes one client response: base64, or "=" for an empty
// response. The result is never nil, so that go-sasl does not take it for
// "no initial response".
func decodeSASL(resp string) ([]byte, error) {
	if resp == "=" {
		return []byte{}, nil
	}
	// encoding/base64 skips CR and LF even in Strict mode; a bare CR can
	// be inside a line, and a response must be canonical base64.
	if strings.ContainsAny(resp, "\r\n") {
		return nil, errBadBase64
	}
	b, err := base64.StdEncoding.Strict().DecodeString(resp)
	if err != nil || len(b) == 0 {
		// An empty string is not a valid response either: "=" is.
		return nil, errBadBase64
	}
	return b, nil
}

// saslExchange runs the SASL exchange of one AUTH command with server: it
// starts with the initial response ir (nil for none) and, for each
// challenge, calls respond for the client's response line. It returns nil
// when the server is done and satisfied, errAuthCancelled when the client
// sent "*", errBadBase64, respond's error, or the mechanism's error (which
// wraps ErrAuthFailed when the authenticator said no).
func saslExchange(server sasl.Server, ir []byte, respond func(challenge []byte) (string, error)) error {
	resp := ir
	for range maxSASLRounds {
		challenge, done, err := server.Next(resp)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		line, err := respond(challenge)
		if err != nil {
			return err
		}
		if line == "*" {
			return errAuthCancelled // RFC 4954 §4
		}
		if resp, err = decodeSASL(line); err != nil {
			return err
		}
	}
	return errSASLRounds
}

// newSASLServer returns the server side of mechanism mech, checking
// credentials with check: the authorization identity ("" when the client
// gave none, as LOGIN never does), the user name and the password. It
// returns nil for a mechanism the server does not offer. (go-sasl dropped
// its LOGIN server; loginServer replaces it.)
func newSASLServer(mech string, check func(identity, user, password string) error) sasl.Server {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(check)
	case sasl.Login:
		return &loginServer{check: func(user, password string) error { return check("", user, password) }}
	}
	return nil
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login-00): it asks for "Username:", then
// "Password:". An initial response is the user name.
type loginServer struct {
	step  int // 0: start, 1: user name asked, 2: password asked, 3: done
	user  string
	check func(user, password string) error
}

func (a *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch a.step {
	case 0:
		if resp == nil {
			a.step = 1
			return []byte("Username:"), false, nil
		}
		a.user, a.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 1:
		a.user, a.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		a.step = 3
		return nil, true, a.check(a.user, string(resp))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

// redactCommand returns a command line as it may be traced: an AUTH line
// keeps its verb and a mechanism the server knows, and what follows them,
// the initial response, becomes <redacted>. Anything else after AUTH may be
// credentials in the wrong place ("AUTH AGJvYgBodW50ZXI=") and is redacted
// whole.
func redactCommand(line string) string {
	i := strings.IndexAny(line, " \t")
	if i < 0 || !strings.EqualFold(line[:i], "AUTH") {
		return line
	}
	rest := strings.TrimLeft(line[i:], " \t")
	mech, resp := rest, ""
	if j := strings.IndexAny(rest, " \t"); j >= 0 {
		mech, resp = rest[:j], strings.TrimLeft(rest[j:], " \t")
	}
	switch {
	case newSASLServer(asciiUpper(mech), nil) == nil:
		return line[:i] + " <redacted>"
	case resp == "":
		return line // no initial response
	}
	return line[:i] + " " + mech + " <redacted>"
}

// Users is a set of user names and bcrypt password hashes for SMTP AUTH;
// its Authenticate method fits Config.Authenticate. The smtpd command reads
// it from the file given with -users.
type Users map[string][]byte

// dummyHash is compared against when a user does not exist, so that an
// unknown user takes as long to refuse as a wrong password.
const dummyHash = "$2a$10$RBbRMKvRoI/zJJ/g6eX53O0xmDZs7c6yvjMFQPOcvz/SyQK.R4GVm"

// Authenticate checks user and password; it returns ErrAuthFailed when they
// do not match.
func (u Users) Authenticate(ctx context.Context, user, password string) error {
	hash, ok := u[user]
	if !ok {
		bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte(password))
		return ErrAuthFailed
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return ErrAuthFailed
	}
	return nil
}

// ParseUsers reads a users file: one "user:bcrypt-hash" per line, as
// "smtpd -hash-password" (or "htpasswd -B", or bcrypt.GenerateFromPassword
// of golang.org/x/crypto/bcrypt) makes them. Blank lines and lines starting
// with '#' are ignored. A user name is valid UTF-8 without spaces, control
// characters or ':'. An error names the first bad line.
func ParseUsers(r io.Reader) (Users, error) {
	users := make(Users)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: want user:bcrypt-hash", n)
		case !validUserName(user):
			return nil, fmt.Errorf("line %d: bad user name %q", n, user)
		case users[user] != nil:
			return nil, fmt.Errorf("line %d: user %q listed twice", n, user)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q: not a bcrypt hash", n, user)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return users, nil
}

func validUserName(user string) bool {
	if user == "" || !utf8.ValidString(user) {
		return false
	}
	for _, r := range user {
		if r <= ' ' || r == 0x7f || r == ':' || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
