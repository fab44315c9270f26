// Package smtpd is an SMTP server that stores the mail it accepts in
// Maildirs: a local mail sink, a real server to embed in the tests of code
// that sends mail, and a readable protocol lesson.
//
// It implements RFC 5321 with these extensions:
//
//	PIPELINING           RFC 2920
//	SIZE                 RFC 1870
//	8BITMIME             RFC 6152
//	ENHANCEDSTATUSCODES  RFC 2034, RFC 3463
//	SMTPUTF8             RFC 6531
//	DSN                  RFC 3461 (parameters recorded in Message.DSN; no notification is ever sent)
//	CHUNKING, BINARYMIME RFC 3030 (BDAT)
//	STARTTLS             RFC 3207 (Config.TLSConfig), and implicit TLS, RFC 8314 (Server.ServeTLS)
//	AUTH PLAIN LOGIN     RFC 4954, RFC 4616 (Config.Authenticate, Users)
//
// With Config.LMTP it speaks LMTP (RFC 2033) instead, for a mail system
// that hands it local deliveries (Postfix's lmtp:inet: and lmtp:unix:
// transports; serve a Unix socket with Serve): LHLO, and one reply per
// recipient after the data.
//
// Connections may also come through a proxy that speaks the HAProxy PROXY
// protocol, version 1 or 2 (Config.ProxyFrom). Every limit on what a client
// may cost (sessions per address, errors, timeouts, a whole-session deadline,
// early talkers) has a safe default; SECURITY.md lists them with the replies.
//
// A Server never relays: every recipient is a local mailbox, and a message
// is answered "250" only once it is durably on disk (written to tmp/,
// fsynced, renamed into new/, new/ fsynced). Message data ends at
// <CRLF>.<CRLF> (at <LF>.<LF> too, but only for a client that has ended
// every line with a bare LF, which no relay does), and BDAT chunks are read
// by count, so SMTP smuggling cannot slip a second message through.
//
// # Embedding
//
// The zero Config is valid and safe; NewServer checks a Config and prepares
// the data directory, and the lifecycle follows net/http:
//
//	srv, err := smtpd.NewServer(smtpd.Config{DataDir: dir})
//	if err != nil {
//		return err
//	}
//	l, err := net.Listen("tcp", "127.0.0.1:0")
//	if err != nil {
//		return err
//	}
//	go srv.Serve(l) // returns ErrServerClosed after Shutdown or Close
//	...
//	err = srv.Shutdown(ctx) // finish transactions, 421 to idle sessions
//
// # Testing code that sends mail
//
// Tests should use package smtpdtest, which does the above on a free
// loopback port with a temporary directory, closes the server with the
// test, and waits for the messages the test expects:
//
//	srv := smtpdtest.NewServer(t)
//	sendWelcomeMail(srv.Addr) // the code under test
//	m, err := srv.WaitFor(t.Context(), smtpdtest.To("alice@example.org"))
//
// Each Message carries its envelope, its bytes (Data, Header, Body), its
// MIME parts (Text, HTML, Attachments, DecodedHeader), the files it was
// stored as, and the Transcript of its session. Config.SessionStarted and
// Config.SessionEnded hand out a SessionLog of every session, refused ones
// too: each command with its reply, and how the session ended. A FaultPlan
// makes the server answer what a test needs at any point of the dialogue
// (greylisting, bounces, rate limits, latency, dropped connections), and
// Config.TestMode accepts any AUTH credentials and records them.
//
// # Storage
//
// Each recipient's local part, lower-cased and made safe as a file name,
// names a Maildir below Config.MaildirRoot. A stored message starts with the
// Return-Path and Received header fields, then From, To, Date and Message-ID
// when the message lacks them, then the message as sent with each CRLF turned
// into LF. DataDir/access.log gets one JSON line per accepted message.
//
// # Tracing
//
// With Config.Trace set and the trace switched on (Config.Verbose, or at
// run time through the management protocol), every line of every session is
// written there, colored by direction and reply class; Config.Explain adds
// what each reply means and where it is defined:
//
//	14:25:11.120 [7] C: MAIL FROM:<bob@example.net>
//	14:25:11.120 [7] S: 250 2.1.0 Ok
//	14:25:11.120 [7]    ↳ sender accepted: a mail transaction has begun; … (RFC 5321 §4.1.1.2; …)
//	14:25:11.121 [7] C: RCPT TO:<alice@example.org>
//	14:25:11.121 [7] S: 250 2.1.5 Ok
//
// # HTTP view
//
// Handler is a web page of the stored mail (list, search, each message with
// its HTML in a sandboxed iframe, its attachments and session transcript), a
// page of the live session trace for a classroom, a JSON API
// (docs/http-api.md), Server-Sent Events of stored messages and of the
// trace, and Prometheus /metrics. ServeWeb serves it on a listener
// (Config.HTTPAddr for ListenAndServe); a program may mount it in its own
// mux instead. It lists the Maildir tree itself, messages stored before the
// server started included. It has no login: keep it on a loopback address.
//
// # Management
//
// ServeMetrics answers the UDP management protocol (docs/metrics-protocol.md):
// counters, the trace switch, the size limit and the content filter switch,
// authenticated with Config.MetricsKey. MetricsClient is its client.
//
// # Content filters
//
// Config.Filter transforms each message before it is stored: a Go function
// (FilterFunc) or a program (CommandFilter), which may also refuse it.
//
// # Commands
//
// The smtpd command runs a Server from the command line; metrics_client
// speaks the management protocol; smtpplay replays a scripted dialogue in
// the colors of the trace, for a lesson. Each has -h.
package smtpd
