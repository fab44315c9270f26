package smtpd_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// logWait bounds the waits of the session log tests.
const logWait = 10 * time.Second

// sessionHooks collects the session logs a server hands to
// Config.SessionStarted and Config.SessionEnded.
type sessionHooks struct {
	mu      sync.Mutex
	started []*smtpd.SessionLog
	ended   chan *smtpd.SessionLog
}

// serverWithHooks starts a server whose session logs h collects.
func serverWithHooks(t *testing.T, cfg smtpd.Config) (*smtpdtest.Server, *sessionHooks) {
	h := &sessionHooks{ended: make(chan *smtpd.SessionLog, 16)}
	cfg.SessionStarted = func(l *smtpd.SessionLog) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.started = append(h.started, l)
	}
	cfg.SessionEnded = func(l *smtpd.SessionLog) { h.ended <- l }
	return smtpdtest.NewServer(t, smtpdtest.Config(cfg)), h
}

// last returns the log of the session that started last.
func (h *sessionHooks) last(t *testing.T) *smtpd.SessionLog {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.started) == 0 {
		t.Fatal("no session started")
	}
	return h.started[len(h.started)-1]
}

// waitEnd waits for the next session to end and returns its record.
func (h *sessionHooks) waitEnd(t *testing.T) smtpd.SessionRecord {
	t.Helper()
	select {
	case l := <-h.ended:
		return l.Record()
	case <-time.After(logWait):
		t.Fatal("no session ended")
	}
	return smtpd.SessionRecord{}
}

// exchangeList formats exchanges one a line, "COMMAND -> CODE".
func exchangeList(ex []smtpd.Exchange) string {
	var b strings.Builder
	for _, e := range ex {
		fmt.Fprintf(&b, "%s -> %d\n", e.Command, e.Code)
	}
	return b.String()
}

// TestSessionLogDialogue: the log of a session holds every reply with the
// command it answered, refusals included (a fault rule's 550, a 552 for a
// message too large), the message delivered, and the end, all visible to
// the client as soon as it has the reply.
func TestSessionLogDialogue(t *testing.T) {
	srv, hooks := serverWithHooks(t, smtpd.Config{
		MaxMessageBytes: 100,
		Faults:          planOf(t, "rcpt match=bounce@* reply 550 5.1.1 No such user here"),
	})
	c, _ := dialGreeted(t, srv.Addr)
	if _, err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Mail("bob@example.net"); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Rcpt("bounce@example.org"); r == nil || r.Code != 550 {
		t.Fatalf("RCPT to bounce: %v, want 550", r)
	}
	if _, err := c.Rcpt("alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Data([]byte(strings.Repeat("x", 200) + "\r\n")); r == nil || r.Code != 552 {
		t.Fatalf("DATA too large: %v, want 552", r)
	}
	if _, err := c.Mail("bob@example.net"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rcpt("alice@example.org"); err != nil {
		t.Fatal(err)
	}
	queued, err := c.Data([]byte("Subject: hi\r\n\r\nhi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	// No waiting: the client has seen 221, so the log has it.
	rec := hooks.last(t).Record()
	want := " -> 220\n" +
		"EHLO client.test -> 250\n" +
		"MAIL FROM:<bob@example.net> -> 250\n" +
		"RCPT TO:<bounce@example.org> -> 550\n" +
		"RCPT TO:<alice@example.org> -> 250\n" +
		"DATA -> 354\n" +
		". -> 552\n" +
		"MAIL FROM:<bob@example.net> -> 250\n" +
		"RCPT TO:<alice@example.org> -> 250\n" +
		"DATA -> 354\n" +
		". -> 250\n" +
		"QUIT -> 221\n"
	if got := exchangeList(rec.Exchanges); got != want {
		t.Errorf("exchanges:\n%s\nwant:\n%s", got, want)
	}
	if rec.End != smtpd.EndQuit || rec.EndTime.IsZero() || rec.EndTime.Before(rec.Start) {
		t.Errorf("End, EndTime = %v, %v (start %v); want quit, after the start", rec.End, rec.EndTime, rec.Start)
	}
	if rec.RemoteAddr.String() != c.Conn().LocalAddr().String() {
		t.Errorf("RemoteAddr = %v, want the client's %v", rec.RemoteAddr, c.Conn().LocalAddr())
	}
	if len(rec.Messages) != 1 || !strings.Contains(queued.String(), "queued as "+rec.Messages[0].ID) {
		t.Fatalf("Messages = %v, want the one queued in %q", rec.Messages, queued)
	}
	if ehlo := rec.Exchanges[1].Reply; !strings.HasPrefix(ehlo, "250-smtpd.test\n250-PIPELINING\n") || !strings.HasSuffix(ehlo, "\n250 HELP") {
		t.Errorf("EHLO reply %q, want all its lines", ehlo)
	}
	if len(rec.Transcript) == 0 || rec.Transcript[0].String() != "* connected from "+c.Conn().LocalAddr().String() {
		t.Errorf("transcript starts with %v", rec.Transcript[:min(1, len(rec.Transcript))])
	}
	if end := hooks.waitEnd(t); end.ID != rec.ID || end.End != smtpd.EndQuit {
		t.Errorf("SessionEnded got session %s ending %v, want %s ending quit", end.ID, end.End, rec.ID)
	}
}

// TestSessionLogEnds: each way a session can end is told apart, and the
// last exchange is the one before the end.
func TestSessionLogEnds(t *testing.T) {
	tests := []struct {
		name     string
		cfg      smtpd.Config
		act      func(c *client.Client, srv *smtpdtest.Server) // after the greeting
		end      smtpd.SessionEnd
		lastLine string // the last exchange: command and code
	}{
		{"disconnected", smtpd.Config{}, func(c *client.Client, _ *smtpdtest.Server) {
			c.Hello("client.test")
			c.Close()
		}, smtpd.EndDisconnected, "EHLO client.test 250"},
		{"dropped", smtpd.Config{Faults: planOf(t, "mail drop")}, func(c *client.Client, _ *smtpdtest.Server) {
			c.Hello("client.test")
			c.Mail("bob@example.net") // no reply: the connection is dropped
		}, smtpd.EndDropped, "EHLO client.test 250"},
		{"reply", smtpd.Config{Faults: planOf(t, "mail reply 421 4.7.0 Go away")}, func(c *client.Client, _ *smtpdtest.Server) {
			c.Hello("client.test")
			c.Mail("bob@example.net")
		}, smtpd.EndReply, "MAIL FROM:<bob@example.net> 421"},
		{"timeout", smtpd.Config{CommandTimeout: 50 * time.Millisecond}, func(c *client.Client, _ *smtpdtest.Server) {
			c.ReadReply() // the 421 that ends the wait
		}, smtpd.EndReply, " 421"},
		{"server closed", smtpd.Config{}, func(c *client.Client, srv *smtpdtest.Server) {
			c.Hello("client.test")
			srv.Close()
		}, smtpd.EndServerClosed, "EHLO client.test 250"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, hooks := serverWithHooks(t, tt.cfg)
			c, _ := dialGreeted(t, srv.Addr)
			tt.act(c, srv)
			if tt.end == smtpd.EndReply {
				// The client has the reply: the log says it ended.
				if rec := hooks.last(t).Record(); rec.End != tt.end {
					t.Errorf("after the reply End = %v, want %v", rec.End, tt.end)
				}
			}
			rec := hooks.waitEnd(t)
			last := rec.Exchanges[len(rec.Exchanges)-1]
			if got := fmt.Sprintf("%s %d", last.Command, last.Code); rec.End != tt.end || got != tt.lastLine {
				t.Errorf("End %v, last exchange %q; want %v, %q", rec.End, got, tt.end, tt.lastLine)
			}
		})
	}
}

// TestMessageTranscriptGrows: a message's transcript ends with its data
// when Config.Delivered sees it; the reply, and the rest of the session up
// to the next MAIL, or QUIT and 221, come after.
func TestMessageTranscriptGrows(t *testing.T) {
	var (
		mu        sync.Mutex
		msgs      []*smtpd.Message
		atDeliver [][]smtpd.TranscriptLine
	)
	srv := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{Delivered: func(m *smtpd.Message) {
		mu.Lock()
		defer mu.Unlock()
		msgs = append(msgs, m)
		atDeliver = append(atDeliver, m.Transcript())
	}}))
	c, _ := dialGreeted(t, srv.Addr)
	c.Hello("client.test")
	for i, cmd := range []string{"NOOP", "QUIT"} {
		if _, err := c.Mail("bob@example.net"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Rcpt("alice@example.org"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Data(fmt.Appendf(nil, "Subject: %d\r\n\r\nhi\r\n", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Cmd(cmd); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	for i, lines := range atDeliver {
		if last := lines[len(lines)-1].String(); last != "C: ." {
			t.Errorf("message %d: at Delivered the transcript ends with %q, want C: .", i, last)
		}
	}
	first, second := lines(msgs[0].Transcript()), lines(msgs[1].Transcript())
	wantFirst := "S: 250 2.0.0 Ok: queued as " + msgs[0].ID + "\nC: NOOP\nS: 250 2.0.0 Ok\n"
	if !strings.HasSuffix(first, wantFirst) {
		t.Errorf("first message's transcript:\n%s\nwant it to end with its reply and NOOP, before the next MAIL:\n%s", first, wantFirst)
	}
	wantSecond := "S: 250 2.0.0 Ok: queued as " + msgs[1].ID + "\nC: QUIT\nS: 221 2.0.0 Bye\n"
	if !strings.HasSuffix(second, wantSecond) {
		t.Errorf("second message's transcript:\n%s\nwant it to end with:\n%s", second, wantSecond)
	}
	if !strings.HasPrefix(second, first) {
		t.Error("the second message's transcript does not start with the session's start")
	}
}

// lines formats the lines of a transcript that went over the wire, one
// line each; events are left out.
func lines(tr []smtpd.TranscriptLine) string {
	var b strings.Builder
	for _, l := range tr {
		if l.Kind != smtpd.KindEvent {
			b.WriteString(l.String() + "\n")
		}
	}
	return b.String()
}

// TestMessageTranscriptConcurrent reads a message's transcript from
// another goroutine while the session goes on adding to it: under -race
// it shows that a message handed to Delivered is never written to
// unguarded.
func TestMessageTranscriptConcurrent(t *testing.T) {
	done := make(chan string, 1)
	srv := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{Delivered: func(m *smtpd.Message) {
		go func() {
			deadline := time.Now().Add(logWait)
			for time.Now().Before(deadline) {
				for _, l := range m.Transcript() {
					if l.Kind == smtpd.KindServer && strings.HasPrefix(l.Text, "221") {
						done <- l.String()
						return
					}
				}
			}
			done <- "no 221 in time"
		}()
	}}))
	if err := sendMail(srv.Addr, "bob@example.net", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if last := <-done; last != "S: 221 2.0.0 Bye" {
		t.Errorf("the reader saw %q", last)
	}
}

// BenchmarkTransactionRecorded is BenchmarkTransaction with sessions
// recorded: the message data and transcript kept for Config.Delivered
// alone, then a session log for the hooks too, read at the session's end,
// as smtpdtest does.
func BenchmarkTransactionRecorded(b *testing.B) {
	delivered := func(c *smtpd.Config) { c.Delivered = func(*smtpd.Message) {} }
	b.Run("Delivered", func(b *testing.B) { benchTransactions(b, startBenchServer(b, delivered)) })
	b.Run("Sessions", func(b *testing.B) {
		benchTransactions(b, startBenchServer(b, delivered, func(c *smtpd.Config) {
			c.SessionStarted = func(*smtpd.SessionLog) {}
			c.SessionEnded = func(l *smtpd.SessionLog) { l.Record() }
		}))
	})
}
