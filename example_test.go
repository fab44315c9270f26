package smtpd_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tpe-protos/smtpd"
)

// Start a server on a free loopback port, send it a message with
// net/smtp, and look at what it stored.
func Example() {
	dir, _ := os.MkdirTemp("", "smtpd-example")
	defer os.RemoveAll(dir)

	delivered := make(chan *smtpd.Message, 1)
	srv, err := smtpd.NewServer(smtpd.Config{
		Hostname:  "mx.example",
		DataDir:   dir,
		Logger:    slog.New(slog.DiscardHandler),
		Delivered: func(m *smtpd.Message) { delivered <- m },
	})
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	msg := "From: <app@example.net>\r\nTo: <alice@example.org>\r\nSubject: Welcome\r\n\r\nHello, Alice!\r\n"
	err = smtp.SendMail(l.Addr().String(), nil, "app@example.net", []string{"alice@example.org"}, []byte(msg))
	if err != nil {
		log.Fatal(err)
	}

	m := <-delivered
	fmt.Println("from:", m.From)
	fmt.Println("to:", m.To)
	fmt.Println("subject:", m.Header().Get("Subject"))
	fmt.Printf("body: %q\n", m.Body())
	stored, _ := os.ReadFile(m.Paths[0])
	fmt.Println("stored, first line:", strings.SplitN(string(stored), "\n", 2)[0])
	// Output:
	// from: app@example.net
	// to: [alice@example.org]
	// subject: Welcome
	// body: "Hello, Alice!\r\n"
	// stored, first line: Return-Path: <app@example.net>
}

// A content filter written in Go: it adds a header field to every message
// and refuses messages without a subject.
func ExampleFilterFunc() {
	dir, _ := os.MkdirTemp("", "smtpd-example")
	defer os.RemoveAll(dir)

	stamp := smtpd.FilterFunc(func(ctx context.Context, m *smtpd.Message, r io.Reader, w io.Writer) error {
		in, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if !bytes.Contains(in, []byte("\nSubject:")) {
			return &smtpd.Rejection{Reason: "a subject is required here"}
		}
		fmt.Fprintf(w, "X-Scanned: yes\n%s", in)
		return nil
	})
	srv, _ := smtpd.NewServer(smtpd.Config{DataDir: dir, Filter: stamp, Logger: slog.New(slog.DiscardHandler)})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Close()

	send := func(msg string) string {
		err := smtp.SendMail(l.Addr().String(), nil, "bob@example.net", []string{"alice@example.org"}, []byte(msg))
		var reply *textproto.Error
		if errors.As(err, &reply) {
			return fmt.Sprint(reply.Code, " ", reply.Msg)
		}
		return fmt.Sprint(err)
	}
	fmt.Println(send("Subject: hi\r\n\r\nhello\r\n"))
	fmt.Println(send("no subject\r\n"))
	// Output:
	// <nil>
	// 554 5.7.1 a subject is required here
}

// The net/http pattern for a server in a program: serve until a signal,
// then shut down gracefully, letting transactions in progress finish.
func ExampleServer_Shutdown() {
	srv, err := smtpd.NewServer(smtpd.Config{Addr: "127.0.0.1:2525"})
	if err != nil {
		log.Fatal(err)
	}
	idle := make(chan struct{})
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Printf("sessions still open: %v", err)
			srv.Close()
		}
		close(idle)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, smtpd.ErrServerClosed) {
		log.Fatal(err)
	}
	<-idle
}

// Ask a running server for a counter over the management protocol and
// switch its trace on.
func ExampleMetricsClient() {
	key := []byte("a key of at least sixteen bytes!")
	dir, _ := os.MkdirTemp("", "smtpd-example")
	defer os.RemoveAll(dir)
	srv, _ := smtpd.NewServer(smtpd.Config{DataDir: dir, MetricsKey: key, Logger: slog.New(slog.DiscardHandler)})
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	go srv.ServeMetrics(pc)
	defer srv.Close()

	c, err := smtpd.DialMetrics(pc.LocalAddr().String(), key)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	n, err := c.Messages(ctx)
	fmt.Println("messages:", n, err)
	fmt.Println(c.SetVerbose(ctx, true))
	on, err := c.Verbose(ctx)
	fmt.Println("verbose:", on, err)
	// Output:
	// messages: 0 <nil>
	// <nil>
	// verbose: true <nil>
}

// A fault plan makes the server answer what a test needs: here the first
// try is greylisted, as real servers do, and bounce@ addresses do not
// exist. The code under test should retry the first and give up on the
// second.
func ExampleFaultPlan() {
	plan, err := smtpd.ParseFaultPlan(strings.NewReader(`
mail first=1 reply 451 4.7.1 Greylisted, try again later
rcpt match=bounce@* reply 550 5.1.1 No such user here
`))
	if err != nil {
		log.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "smtpd-example")
	defer os.RemoveAll(dir)
	srv, _ := smtpd.NewServer(smtpd.Config{DataDir: dir, Faults: plan, Logger: slog.New(slog.DiscardHandler)})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Close()

	send := func(to string) string {
		err := smtp.SendMail(l.Addr().String(), nil, "app@example.net", []string{to}, []byte("Subject: hi\r\n\r\nhi\r\n"))
		var reply *textproto.Error
		if errors.As(err, &reply) {
			return fmt.Sprint(reply.Code, " ", reply.Msg)
		}
		return fmt.Sprint(err)
	}
	fmt.Println(send("alice@example.org"))
	fmt.Println(send("alice@example.org"))
	fmt.Println(send("bounce@example.org"))
	// Output:
	// 451 4.7.1 Greylisted, try again later
	// <nil>
	// 550 5.1.1 No such user here
}

// Every session, refused ones too: each command with its reply, the
// messages delivered and how the session ended.
func ExampleSessionLog() {
	dir, _ := os.MkdirTemp("", "smtpd-example")
	defer os.RemoveAll(dir)
	plan, _ := smtpd.ParseFaultPlan(strings.NewReader("mail first=1 reply 451 4.7.1 Greylisted, try again later"))
	ended := make(chan *smtpd.SessionLog, 2)
	srv, _ := smtpd.NewServer(smtpd.Config{
		DataDir:      dir,
		Faults:       plan,
		Logger:       slog.New(slog.DiscardHandler),
		SessionEnded: func(l *smtpd.SessionLog) { ended <- l },
	})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Close()

	for range 2 { // the second try is accepted
		smtp.SendMail(l.Addr().String(), nil, "app@example.net", []string{"alice@example.org"}, []byte("Subject: hi\r\n\r\nhi\r\n"))
	}
	sessions := []smtpd.SessionRecord{(<-ended).Record(), (<-ended).Record()}
	slices.SortFunc(sessions, func(a, b smtpd.SessionRecord) int { return a.Start.Compare(b.Start) })
	for _, s := range sessions {
		fmt.Printf("session %s, %d message(s), ended: %v\n", s.ID, len(s.Messages), s.End)
		for _, e := range s.Exchanges {
			verb, _, _ := strings.Cut(e.Command, " ")
			fmt.Printf("  %-5s %d\n", cmp.Or(verb, "-"), e.Code)
		}
	}
	// Output:
	// session 1, 0 message(s), ended: disconnected
	//   -     220
	//   EHLO  250
	//   MAIL  451
	// session 2, 1 message(s), ended: quit
	//   -     220
	//   EHLO  250
	//   MAIL  250
	//   RCPT  250
	//   DATA  354
	//   .     250
	//   QUIT  221
}

// A message's transcript goes on past its data: the reply, and the end of
// the session.
func ExampleMessage_Transcript() {
	dir, _ := os.MkdirTemp("", "smtpd-example")
	defer os.RemoveAll(dir)
	delivered := make(chan *smtpd.Message, 1)
	srv, _ := smtpd.NewServer(smtpd.Config{
		Hostname:  "mx.example",
		DataDir:   dir,
		Logger:    slog.New(slog.DiscardHandler),
		Delivered: func(m *smtpd.Message) { delivered <- m },
	})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Close()

	smtp.SendMail(l.Addr().String(), nil, "app@example.net", []string{"alice@example.org"}, []byte("Subject: hi\r\n\r\nhi\r\n"))
	m := <-delivered
	tr := m.Transcript()
	from := slices.IndexFunc(tr, func(l smtpd.TranscriptLine) bool { return strings.HasPrefix(l.Text, "MAIL") })
	for _, line := range tr[from:] {
		if line.Kind != smtpd.KindEvent {
			fmt.Println(strings.ReplaceAll(line.String(), m.ID, "<id>"))
		}
	}
	// Output:
	// C: MAIL FROM:<app@example.net> BODY=8BITMIME SMTPUTF8
	// S: 250 2.1.0 Ok
	// C: RCPT TO:<alice@example.org>
	// S: 250 2.1.5 Ok
	// C: DATA
	// S: 354 End data with <CR><LF>.<CR><LF>
	// C: <message data: 19 octets>
	// C: .
	// S: 250 2.0.0 Ok: queued as <id>
	// C: QUIT
	// S: 221 2.0.0 Bye
}

// The MIME structure of a message: its text and HTML, its attachments, its
// header fields decoded.
func ExampleMessage_Text() {
	m := &smtpd.Message{Data: []byte("Subject: =?UTF-8?Q?Caf=C3=A9?= menu\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n" +
		"\r\n" +
		"--b\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Today's menu is attached.\r\n" +
		"--b\r\n" +
		"Content-Type: text/csv; name=menu.csv\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		"c291cCw0Cg==\r\n" +
		"--b--\r\n")}
	fmt.Println(m.DecodedHeader("Subject"))
	fmt.Printf("%q\n", m.Text())
	for _, a := range m.Attachments() {
		fmt.Printf("%s %s %q\n", a.Filename, a.ContentType, a.Data)
	}
	// Output:
	// Café menu
	// "Today's menu is attached."
	// menu.csv text/csv "soup,4\n"
}
